"""Chain backends: the embedded in-process EVM (default) or any JSON-RPC node.

``connect()`` returns a :class:`Chain`: a web3 instance plus the account that signs locally,
explicit nonces, gas and fees, receipt handling with or without ``status``, and a way to wait
for (or, on dev chains, mine) a future block. PoA networks (clique, ...) get web3's
``ExtraDataToPOAMiddleware``, a fixed gas limit instead of ``eth_estimateGas``, and a
pre-flight ``eth_call`` so reverts are still reported by name.
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from eth_account import Account
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.middleware import ExtraDataToPOAMiddleware

from .errors import ContractRevertError, LedgerError, TransactionError

RevertDecoder = Callable[[bytes], Exception | None]
UNREACHABLE_S = 30.0
"""Seconds a JSON-RPC node may refuse connections (a restart) before a request fails."""


class ChainUnreachableError(TransactionError):
    """The chain node refused connections for longer than the retry window (it stopped, or
    did not come back from a restart in time)."""


class RetryingHTTPProvider(HTTPProvider):
    """web3's HTTP provider, retrying every request while the node refuses connections (a
    restarted node: anvil with ``--state`` is back in a second) for at most ``window``
    seconds, then :class:`ChainUnreachableError`. Resending ``eth_sendRawTransaction`` is safe:
    the same signed bytes are the same transaction (``Chain.transact`` handles "already
    known")."""

    def __init__(self, url: str, window: float = UNREACHABLE_S, **kw: Any) -> None:
        super().__init__(url, exception_retry_configuration=None, **kw)
        self.window = window

    def _make_request(self, method: Any, request_data: bytes) -> bytes:
        deadline = time.monotonic() + self.window
        delay = 0.05
        while True:
            try:
                return super()._make_request(method, request_data)
            except requests.ConnectionError as exc:
                if time.monotonic() + delay > deadline:
                    raise ChainUnreachableError(
                        f"chain node at {self.endpoint_uri} refused {method} for "
                        f"{self.window:.0f} s: {type(exc).__name__}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
_HEX = re.compile(r"0x[0-9a-fA-F]{8,}")
_BYTES_LITERAL = re.compile(r"b'(?:[^'\\]|\\.)*'" + r'|b"(?:[^"\\]|\\.)*"')


@dataclass
class TxOutcome:
    """A mined transaction: hash, block, gas used, and its raw logs."""

    tx_hash: str
    block_number: int
    gas_used: int
    logs: list[Any]


@dataclass
class Chain:
    """A connection that can send transactions from one locally held key.

    Attributes:
        w3: the web3 instance. account: the sending account (local key).
        kind: "embedded" or "rpc". poa: PoA middleware and PoA transaction rules in use.
        can_mine: the node mines on request (embedded, anvil), so waiting for a block is instant.
        tx_count: transactions this object has sent (for benchmarks).
    """

    w3: Web3
    account: Any
    kind: str
    poa: bool
    can_mine: bool
    chain_id: int
    gas_limit: int | None = None
    gas_price: int | None = None
    receipt_timeout: float = 120.0
    poll_interval: float = 0.1
    tx_count: int = 0
    _nonce: int | None = field(default=None, repr=False)
    _gas_cap: int | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """Returns: the sending account's address."""
        return str(self.account.address)

    def block_number(self) -> int:
        """Returns: the latest block number."""
        return int(self.w3.eth.block_number)

    def block_hash(self, number: int) -> bytes:
        """Returns: the hash of block ``number`` (32 bytes)."""
        return bytes(self.w3.eth.get_block(number)["hash"])

    def wait_for_block(self, number: int, timeout: float = 120.0) -> None:
        """Return once block ``number`` exists: mine empty blocks on dev chains, else poll.

        Raises: TransactionError on timeout.
        """
        deadline = time.monotonic() + timeout
        while (current := self.block_number()) < number:
            if self.can_mine:
                self.mine(number - current)
                continue
            if time.monotonic() > deadline:
                raise TransactionError(
                    f"block {number} not reached in {timeout:.0f} s (at {current})"
                )
            time.sleep(self.poll_interval)

    def mine(self, blocks: int = 1) -> None:
        """Mine empty blocks (embedded chain and anvil only)."""
        if not self.can_mine:
            raise LedgerError("this node does not mine on request; wait for blocks instead")
        if self.kind == "embedded":
            self.w3.provider.ethereum_tester.mine_blocks(blocks)  # type: ignore[attr-defined]
        else:
            self.w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    def resync(self) -> None:
        """Forget the local nonce (after a chain snapshot was reverted or another sender used
        the same key); the next transaction reads it from the node."""
        self._nonce = None

    def with_account(self, private_key: str | bytes) -> Chain:
        """Returns: a Chain on the same node sending from another key (its own nonces)."""
        return replace(self, account=Account.from_key(private_key), tx_count=0, _nonce=None)

    def send_value(self, to: str, amount: int) -> TxOutcome:
        """Send ``amount`` wei to ``to`` (e.g. to fund another sender)."""
        return self.transact(Web3.to_checksum_address(to), b"", amount)

    def balance(self, address: str) -> int:
        """Returns: ``address``'s balance in wei."""
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def call(
        self, to: str, data: bytes, value: int = 0, decode: RevertDecoder | None = None
    ) -> bytes:
        """Run ``eth_call`` from the sending account. Raises the decoded revert."""
        tx = {"from": self.address, "to": to, "data": data, "value": value}
        try:
            out = bytes(self.w3.eth.call(tx, "latest"))  # type: ignore[arg-type]
        except Exception as exc:
            raise _translate(exc, decode) from exc
        # some clients (ethereumjs 0.9.0) return revert data as the call's result; ABI return
        # data is a multiple of 32 bytes, a custom error is 4 + 32 n
        if decode is not None and len(out) % 32 == 4:
            named = decode(out)
            if named is not None:
                raise named
        return out

    def transact(
        self, to: str | None, data: bytes, value: int = 0, decode: RevertDecoder | None = None
    ) -> TxOutcome:
        """Sign locally and send a transaction, wait for its receipt.

        Args:
            to: contract address, or None to deploy. data: calldata or init code.
            value: wei sent. decode: turns revert data into a named exception.
        Returns: the :class:`TxOutcome`.
        Raises: the decoded revert (``ContractRevertError``) or ``TransactionError``.
        """
        tx: dict[str, Any] = {
            "from": self.address,
            "data": data,
            "value": value,
            "chainId": self.chain_id,
        }
        if to is not None:
            tx["to"] = Web3.to_checksum_address(to)
        limit = self._block_gas_limit()
        predicted: Exception | None = None
        if self.kind == "embedded" and self.gas_limit is None:
            # in-process EVM: no estimate (each EVM run costs tens of ms); a revert is mined
            # with status 0 and diagnosed afterwards by replaying the call
            gas = int(limit * 0.9)
        elif self.poa or self.gas_limit is not None:
            # pre-flight for the revert's name. It is only a prediction: some PoA clients
            # (ethereumjs 0.9.0) run eth_call with block.number = 0, so the mined outcome decides
            if to is not None:
                try:
                    self.call(to, data, value, decode)
                except LedgerError as exc:
                    predicted = exc
            gas = self.gas_limit or int(limit * 0.9)
        else:
            try:
                estimate = int(self.w3.eth.estimate_gas(tx, "latest"))  # type: ignore[arg-type]
            except Exception as exc:
                raise _translate(exc, decode) from exc
            gas = min(limit, int(estimate * 1.2) + 20_000)
        tx["gas"] = gas
        tx["gasPrice"] = self.gas_price if self.gas_price is not None else self._gas_price()
        tx["nonce"] = self._next_nonce()
        signed = self.account.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:
            if not self._already_sent(signed.hash):  # a resend after a dropped connection
                self._nonce = None  # resynchronise from the node next time
                raise _translate(exc, decode) from exc
            tx_hash = signed.hash
        self.tx_count += 1
        receipt = self._wait_receipt(tx_hash)
        ok = receipt.get("status")
        if ok is None:  # PoA clients without `status`: success iff the call emitted logs
            # (every state-changing contract call emits an event; a plain transfer has no data)
            deployed = to is None and receipt.get("contractAddress")
            ok = 1 if receipt["logs"] or deployed or (to is not None and not data) else 0
        if ok != 1:
            if predicted is None and to is not None and self.kind == "embedded":
                try:  # the failed transaction left the state as it was: replay it as a call
                    self.call(to, data, value, decode)
                except LedgerError as exc:
                    predicted = exc
            if isinstance(predicted, ContractRevertError):
                raise ContractRevertError(
                    predicted.name, predicted.args_by_name, "0x" + bytes(tx_hash).hex()
                )
            raise TransactionError(
                f"transaction {tx_hash.hex()} failed (gas used {receipt['gasUsed']} of {gas})"
            )
        return TxOutcome(
            "0x" + bytes(tx_hash).hex(),
            int(receipt["blockNumber"]),
            int(receipt["gasUsed"]),
            list(receipt["logs"]) if to is not None else [receipt.get("contractAddress")],
        )

    def _already_sent(self, tx_hash: bytes) -> bool:
        """Whether the node knows the transaction (a retried send whose first try got
        through before the connection dropped answers "already known" or "nonce too low")."""
        try:
            return self.w3.eth.get_transaction(tx_hash) is not None  # type: ignore[arg-type]
        except Exception:
            return False

    def _wait_receipt(self, tx_hash: bytes) -> Any:
        # own loop: some PoA clients (ethereumjs 0.9.0) briefly answer "not found in DB" for a
        # receipt whose block is still being written; retry until the timeout
        deadline = time.monotonic() + self.receipt_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except Exception as exc:  # TransactionNotFound, transient RPC errors
                last = exc
            time.sleep(self.poll_interval)
        raise TransactionError(
            f"no receipt for {bytes(tx_hash).hex()} within {self.receipt_timeout:.0f} s ({last})"
        )

    def _next_nonce(self) -> int:
        if self._nonce is None:
            self._nonce = int(self.w3.eth.get_transaction_count(self.account.address, "latest"))
        nonce = self._nonce
        self._nonce += 1
        return nonce

    def _block_gas_limit(self) -> int:
        if self._gas_cap is None:
            self._gas_cap = int(self.w3.eth.get_block("latest")["gasLimit"])
        return self._gas_cap

    def _gas_price(self) -> int:
        try:
            price = int(self.w3.eth.gas_price)
        except Exception:
            price = 10**9
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base is not None:
            price = max(price, 2 * int(base) + 1)
        return max(price, 1)


def connect(
    url: str | None = None,
    *,
    poa: bool | None = None,
    private_key: str | bytes | None = None,
    gas_limit: int | None = None,
    gas_price: int | None = None,
    receipt_timeout: float = 120.0,
    poll_interval: float = 0.1,
    unreachable_s: float = UNREACHABLE_S,
) -> Chain:
    """Connect to a chain.

    Args:
        url: None for the embedded in-process EVM (eth-tester + py-evm); an ``http(s)://``
            JSON-RPC endpoint otherwise (anvil, a clique PoA node, a PoA network).
        poa: force PoA handling on or off; None detects it from the extra-data length.
        private_key: the sending key (required for a URL; the embedded chain uses its first
            funded account by default). Transactions are always signed locally.
        gas_limit: explicit gas per transaction (PoA default: 90% of the block gas limit).
        gas_price: explicit legacy gas price in wei (default: the node's, above base fee).
        receipt_timeout, poll_interval: seconds.
        unreachable_s: seconds a request retries while the node refuses connections (a
            restart), before :class:`ChainUnreachableError`.
    Returns: a :class:`Chain`.
    Raises: LedgerError when the URL is unsupported, unreachable, or no key is given.
    """
    if url is None:
        w3 = Web3(EthereumTesterProvider())
        tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
        key = private_key if private_key is not None else tester.backend.account_keys[0].to_bytes()
        return Chain(
            w3,
            Account.from_key(key),
            "embedded",
            bool(poa),
            True,
            int(w3.eth.chain_id),
            gas_limit,
            gas_price,
            receipt_timeout,
            poll_interval,
        )
    if not url.startswith(("http://", "https://")):
        raise LedgerError(
            f"unsupported chain URL {url!r}: use http(s):// or None for the embedded chain"
        )
    if private_key is None:
        raise LedgerError("a private key is needed to send transactions to a JSON-RPC node")
    try:
        account = Account.from_key(private_key)
    except Exception as exc:
        raise LedgerError(f"invalid private key: {type(exc).__name__}") from exc
    provider = RetryingHTTPProvider(url, 0.0, request_kwargs={"timeout": 60})
    w3 = Web3(provider)
    try:  # no retry window yet: a wrong URL fails at once
        raw = w3.provider.make_request("eth_getBlockByNumber", ["latest", False])  # type: ignore[arg-type]
        version = str(w3.provider.make_request("web3_clientVersion", []).get("result", ""))  # type: ignore[arg-type]
    except Exception as exc:
        raise LedgerError(f"chain node at {url} does not answer: {exc}") from exc
    provider.window = unreachable_s
    if "result" not in raw or raw["result"] is None:
        raise LedgerError(f"chain node at {url} returned no latest block: {raw.get('error')}")
    if poa is None:
        extra = str(raw["result"].get("extraData", "0x"))
        poa = (len(extra) - 2) // 2 > 32
    if poa:
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    can_mine = "anvil" in version.lower()
    return Chain(
        w3,
        account,
        "rpc",
        poa,
        can_mine,
        int(w3.eth.chain_id),
        gas_limit,
        gas_price,
        receipt_timeout,
        poll_interval,
    )


def revert_data(exc: BaseException) -> bytes | None:
    """Returns: the revert data carried by a web3/eth-tester exception, if any."""
    candidates: list[Any] = []
    seen: BaseException | None = exc
    while seen is not None:  # eth-tester wraps the raw revert bytes in a chained exception
        candidates.append(getattr(seen, "data", None))
        rpc = getattr(seen, "rpc_response", None)
        if isinstance(rpc, dict):
            err = rpc.get("error") or {}
            candidates.append(err.get("data") if isinstance(err, dict) else None)
        candidates.extend(seen.args)
        seen = seen.__cause__ or seen.__context__
    for c in candidates:
        if isinstance(c, dict):
            c = c.get("data")
        if isinstance(c, bytes | bytearray) and len(c) >= 4:
            return bytes(c)
        if isinstance(c, str):
            lit = _BYTES_LITERAL.search(c)  # eth-tester: "execution reverted: b'...'"
            if lit:
                raw = ast.literal_eval(lit.group(0))
                if isinstance(raw, bytes) and len(raw) >= 4:
                    return raw
            m = _HEX.search(c)
            if m:
                return bytes.fromhex(m.group(0)[2:])
    return None


def _translate(exc: Exception, decode: RevertDecoder | None) -> Exception:
    data = revert_data(exc)
    if data is not None and decode is not None:
        named = decode(data)
        if named is not None:
            return named
    if isinstance(exc, LedgerError):
        return exc
    return TransactionError(f"{type(exc).__name__}: {exc}")
