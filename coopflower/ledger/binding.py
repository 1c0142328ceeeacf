"""The contract binding's plumbing: the web3 contract object, sending a transaction, calling a
view, naming a revert's custom error and decoding the contract's events.

:class:`ContractBinding` is the base of :class:`~coopflower.ledger.contract.CoopLedger`; the
calls themselves are in ``views``, ``tasks`` and ``rounds``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_hash.auto import keccak
from eth_utils import event_abi_to_log_topic, to_checksum_address

from .artifact import Artifact, load_artifact
from .backend import Chain, TxOutcome, revert_data
from .eip712 import Eip712Domain
from .errors import ContractRevertError, LedgerError, TransactionError
from .records import Event, TaskParams, TxResult


class ContractBinding:
    """A contract at ``address`` on ``chain``, bound to ``artifact``'s ABI (the shipped
    CoopLedger artifact by default). Transactions are sent from ``chain.account``."""

    def __init__(self, chain: Chain, address: str, artifact: Artifact | None = None):
        self.chain = chain
        self.artifact = artifact or load_artifact()
        self.address = to_checksum_address(address)
        self._c = chain.w3.eth.contract(address=self.address, abi=self.artifact.abi)
        self._events = {
            "0x" + event_abi_to_log_topic(e).hex(): e["name"]  # type: ignore[arg-type]
            for e in self.artifact.abi
            if e["type"] == "event"
        }
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for e in self.artifact.abi:
            if e["type"] == "error":
                types = [i["type"] for i in e["inputs"]]
                sel = bytes(keccak(f"{e['name']}({','.join(types)})".encode()))[:4]
                self._errors[sel] = (e["name"], types, [i["name"] for i in e["inputs"]])
        self.domain = Eip712Domain(chain.chain_id, self.address)
        self._params: dict[int, TaskParams] = {}
        # (task, round) -> (block it was opened in, that block's hash): every event of the
        # round is in that block or later, so its event reads need not scan the chain from 0
        self._round_starts: dict[tuple[int, int], tuple[int, bytes]] = {}
        # (task, round) -> (block that closed it, its hash, the round's Submitted events) when
        # this binding's own transactions carried every submission of the closed round
        self._closed_rounds: dict[tuple[int, int], tuple[int, bytes, tuple[Event, ...]]] = {}
        # task -> (block, its hash, the participants read at that block or before)
        self._participants: dict[int, tuple[int, bytes, list[str]]] = {}
        self.max_batch: int | None = None  # items per transaction at most (None: block gas)

    def batch_size(self, kind: str, extra_per_tx: int = 0, extra_per_item: int = 0) -> int:
        """Items of ``kind`` (``coopflower.ledger.batches.GAS_PER_ITEM``) per transaction: as
        many as the block gas limit takes, at most ``max_batch``."""
        from .batches import batch_size

        return batch_size(self.chain._block_gas_limit(), kind, extra_per_tx, self.max_batch,
                          extra_per_item)

    def events(
        self, name: str | None = None, from_block: int = 0, task_id: int | None = None
    ) -> list[Event]:
        """Returns: the contract's events (optionally one kind, one task), oldest first."""
        topics: list[Any] = []
        if name is not None:
            topic = next((t for t, n in self._events.items() if n == name), None)
            if topic is None:
                raise LedgerError(f"no event {name!r} in the contract")
            topics.append(topic)
        elif task_id is not None:
            topics.append(None)
        if task_id is not None:
            topics.append("0x" + task_id.to_bytes(32, "big").hex())
        flt: dict[str, Any] = {
            "address": self.address,
            "fromBlock": from_block,
            "toBlock": "latest",
        }
        if topics:
            flt["topics"] = topics
        return self._decode_logs(self.chain.w3.eth.get_logs(flt))  # type: ignore[arg-type]

    # ------------------------------------------------------------ internals
    def _error_name(self, selector: bytes) -> str:
        """Returns: the name of the contract's error with this 4-byte selector."""
        spec = self._errors.get(bytes(selector)[:4])
        return spec[0] if spec else "0x" + bytes(selector).hex()

    def decode_revert(self, data: bytes) -> ContractRevertError | None:
        """Returns: the named error for revert ``data``, or None when it is not ours."""
        spec = self._errors.get(bytes(data[:4]))
        if spec is None:
            return None
        name, types, names = spec
        try:
            values = abi_decode(types, bytes(data[4:]))
        except Exception:
            return ContractRevertError(name)
        return ContractRevertError(name, dict(zip(names, values, strict=True)))

    def _send(self, fn: str, args: list[Any], value: int = 0) -> TxResult:
        if value < 0:
            raise LedgerError(f"{fn}: negative value {value}")
        try:
            data = bytes.fromhex(self._c.encode_abi(fn, args=args)[2:])
        except Exception as exc:  # web3 raises several types for out-of-range or wrong types
            raise LedgerError(f"{fn}: arguments do not fit the contract's ABI: {exc}") from exc
        out: TxOutcome = self.chain.transact(self.address, data, value, self.decode_revert)
        return TxResult(out.tx_hash, out.block_number, out.gas_used, self._decode_logs(out.logs))

    def _view(self, fn: str, *args: Any) -> Any:
        try:
            # an explicit sender: without one web3's eth-tester middleware guesses it from
            # eth_accounts on every call (a third of a view's time on the embedded chain);
            # no view of the contract reads msg.sender
            return getattr(self._c.functions, fn)(*args).call({"from": self.chain.address})
        except Exception as exc:
            data = revert_data(exc)
            named = self.decode_revert(data) if data else None
            if named is not None:
                raise named from exc
            raise TransactionError(f"{fn} call failed: {exc}") from exc

    def _decode_logs(self, logs: Sequence[Any]) -> list[Event]:
        out = []
        for log in logs:
            if to_checksum_address(log["address"]) != self.address or not log["topics"]:
                continue
            topic = "0x" + bytes(log["topics"][0]).hex()
            name = self._events.get(topic)
            if name is None:
                continue
            ev = getattr(self._c.events, name)().process_log(log)
            out.append(
                Event(
                    name,
                    _plain(dict(ev["args"])),
                    int(log["blockNumber"]),
                    "0x" + bytes(log["transactionHash"]).hex(),
                    int(log["logIndex"]),
                )
            )
        return out


def _plain(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in args.items():
        if isinstance(v, bytes):
            out[k] = bytes(v)
        elif isinstance(v, tuple | list):
            out[k] = tuple(v)
        else:
            out[k] = v
    return out
