"""Gas per operation of the CoopLedger contract, and transactions per round at 10 and 100
contributors, measured through the binding on a real EVM.

    python bench/gas.py --json                  # embedded EVM (py-evm)
    python bench/gas.py --json --backend anvil  # anvil from tools/evm

Prints progress to stderr and one JSON object to stdout. Gas figures come from receipts;
transaction counts are the transactions the binding actually sent for one round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account  # noqa: E402

from coopflower.ledger import (  # noqa: E402
    Chain,
    CoopLedger,
    TaskParams,
    connect,
    sign_registration,
    sign_submission,
    sign_vote,
)
from coopflower.ledger.eip712 import seed_commitment  # noqa: E402

TARGET_SUBMIT = 60_000
TARGET_VOTE = 30_000
CID_LEN = 36  # a CIDv1 raw/sha2-256 in binary: 0x01 0x55 0x12 0x20 + 32 bytes


def log(msg: str) -> None:
    print(f"[gas] {msg}", file=sys.stderr, flush=True)


def _keys(n: int) -> list[str]:
    return ["0x" + os.urandom(32).hex() for _ in range(n)]


def _setup(
    led: CoopLedger, n: int, k: int = 3
) -> tuple[int, TaskParams, list[str], dict[str, int]]:
    params = TaskParams(
        spec_hash=os.urandom(32),
        k=k,
        quorum=2,
        max_submissions=n,
        submit_blocks=500,
        vote_blocks=500,
    )
    out: dict[str, int] = {}
    task = led.publish_task(params, params.escrow_per_round() * 2)
    keys = _keys(n)
    regs = [sign_registration(key, led.domain, task, params.min_deposit) for key in keys]
    out["register_batch_gas"] = led.register_for(task, regs).gas_used
    return task, params, keys, out


def _cid() -> bytes:
    return b"\x01\x55\x12\x20" + os.urandom(32)


def measure_operations(chain: Chain, n: int = 10) -> dict[str, Any]:
    """Gas of each operation with batches of ``n`` (10) contributors and of 10 votes."""
    led = CoopLedger.deploy(chain)
    out: dict[str, Any] = {"deploy_gas": led.deploy_gas}
    t0 = chain.block_number()
    params = TaskParams(
        spec_hash=os.urandom(32), max_submissions=n, submit_blocks=500, vote_blocks=500
    )
    first_task = led.publish_task(params, params.escrow_per_round())
    out["publish_task_gas"] = _gas_of(chain, led, "TaskPublished", first_task, t0)
    task, params, keys, reg = _setup(led, n)
    out["register_gas_per_node"] = reg["register_batch_gas"] // n
    opened = led.open_round(task)
    out["open_round_gas"] = _gas_of(chain, led, "RoundOpened", opened.task_id, t0)
    rnd = opened.round
    subs = [sign_submission(key, led.domain, task, rnd, _cid(), os.urandom(32)) for key in keys]
    tx = led.submit_batch(task, rnd, subs, close=False)
    out["submit_batch_gas"] = tx.gas_used
    out["submit_gas_per_contributor"] = round(tx.gas_used / n)
    out["close_submissions_gas"] = led.close_submissions(task, rnd).gas_used
    plan = led.assignments(task, rnd)
    out["fix_randomness_gas"] = led.fix_randomness(task, rnd).gas_used
    key_of = {Account.from_key(key).address: key for key in keys}
    votes = [
        sign_vote(key_of[v], led.domain, task, rnd, s, subs[s].model_digest, True, 9000)
        for s, vs in plan.verifiers.items()
        for v in vs
    ]
    first, rest = votes[:10], votes[10:]
    tx = led.submit_votes(task, rnd, first)
    out["vote_batch_gas"] = tx.gas_used
    out["vote_gas_per_vote"] = round(tx.gas_used / len(first))
    led.submit_votes(task, rnd, rest)
    settled = led.settle(task, rnd)
    out["settle_gas"] = settled.tx.gas_used
    out["settle_gas_per_submission"] = round(settled.tx.gas_used / n)
    out["record_metamodel_gas"] = led.record_metamodel(task, rnd, _cid(), os.urandom(32)).gas_used
    out["log_round_gas"] = led.log_round(task, rnd, _cid(), os.urandom(32)).gas_used
    return out


def measure_reveals(chain: Chain, n: int = 10) -> dict[str, Any]:
    """The same batches in a task with seed reveals (commitment in each submission, one
    ``revealSeeds`` for all shares): gas per submission, per share and per vote."""
    led = CoopLedger.deploy(chain)
    params = TaskParams(spec_hash=os.urandom(32), k=3, quorum=2, max_submissions=n,
                        submit_blocks=500, vote_blocks=500, reveal_blocks=5)
    task = led.publish_task(params, params.escrow_per_round() * 2)
    keys = _keys(n)
    led.register_for(task, [sign_registration(key, led.domain, task, params.min_deposit)
                            for key in keys])
    rnd = led.open_round(task).round
    shares = [os.urandom(32) for _ in keys]
    subs = [sign_submission(key, led.domain, task, rnd, _cid(), os.urandom(32),
                            seed_commitment(share, Account.from_key(key).address))
            for key, share in zip(keys, shares, strict=True)]
    out: dict[str, Any] = {}
    tx = led.submit_batch(task, rnd, subs, close=True)
    out["submit_gas_per_contributor_reveal"] = round(tx.gas_used / n)
    chain.wait_for_block(led.round(task, rnd).rand_block + 1)
    by_id = {s.submission: s for s in led.submissions(task, rnd)}
    order = {Account.from_key(k).address.lower(): sh for k, sh in zip(keys, shares, strict=True)}
    tx = led.reveal_seeds(task, rnd, {sid: order[s.contributor.lower()]
                                      for sid, s in by_id.items()})
    out["reveal_batch_gas"] = tx.gas_used
    out["reveal_gas_per_share"] = round(tx.gas_used / n)
    plan = led.assignments(task, rnd)
    key_of = {Account.from_key(key).address: key for key in keys}
    votes = [sign_vote(key_of[v], led.domain, task, rnd, s, subs[s].model_digest, True, 9000)
             for s, vs in plan.verifiers.items() for v in vs]
    tx = led.submit_votes(task, rnd, votes[:10])
    out["vote_gas_per_vote_reveal"] = round(tx.gas_used / 10)
    return out


def _gas_of(chain: Chain, led: CoopLedger, name: str, task: int, from_block: int) -> int:
    ev = [e for e in led.events(name, from_block, task)][-1]
    return int(chain.w3.eth.get_transaction_receipt(ev.tx_hash)["gasUsed"])  # type: ignore[arg-type]


def measure_round(chain: Chain, n: int) -> dict[str, Any]:
    """One full round with ``n`` contributors as the coordinated strategy drives it.

    Returns: transactions sent for the round, and gas of its batches.
    """
    led = CoopLedger.deploy(chain)
    task, params, keys, reg = _setup(led, n)
    key_of = {Account.from_key(key).address: key for key in keys}
    t0 = time.monotonic()
    tx0 = chain.tx_count
    gas = 0
    rnd = led.open_round(task).round
    subs = [sign_submission(key, led.domain, task, rnd, _cid(), os.urandom(32)) for key in keys]
    gas += led.submit_batch(task, rnd, subs, close=True).gas_used
    plan = led.assignments(task, rnd)
    votes = [
        sign_vote(key_of[v], led.domain, task, rnd, s, subs[s].model_digest, s % 4 != 0, 9000)
        for s, vs in plan.verifiers.items()
        for v in vs
    ]
    gas += led.submit_votes(task, rnd, votes).gas_used
    settled = led.settle(task, rnd)
    gas += settled.tx.gas_used
    gas += led.record_metamodel(task, rnd, _cid(), os.urandom(32)).gas_used
    return {
        "tx": chain.tx_count - tx0,
        "round_gas_excl_open": gas,
        "votes": len(votes),
        "accepted": settled.accepted,
        "seconds": round(time.monotonic() - t0, 2),
        "register_gas_per_node": reg["register_batch_gas"] // n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--backend", choices=["embedded", "anvil"], default="embedded")
    args = ap.parse_args()
    with ExitStack() as stack:
        if args.backend == "anvil":
            from coopflower.ledger.nodes import anvil

            node = stack.enter_context(anvil())
            chain = connect(node.url, private_key=node.private_keys[0])
        else:
            chain = connect()
        log(f"backend {args.backend}: operations with batches of 10")
        result: dict[str, Any] = {"backend": args.backend}
        result.update(measure_operations(chain, 10))
        log("the same batches with seed reveals (reveal_blocks=5), 10 and 100 contributors")
        result.update(measure_reveals(chain, 10))
        plain_100 = measure_operations(chain, 100)
        result["reveal_100"] = measure_reveals(chain, 100)
        result["reveal_100"]["submit_gas_per_contributor"] = plain_100[
            "submit_gas_per_contributor"]
        result["reveal_100"]["fix_randomness_gas_replaced"] = plain_100["fix_randomness_gas"]
        for out, base in ((result, result), (result["reveal_100"], plain_100)):
            out["reveal_added_gas_per_submission"] = (
                out["submit_gas_per_contributor_reveal"] - base["submit_gas_per_contributor"]
                + out["reveal_gas_per_share"])
            out["reveal_added_gas_per_vote"] = (
                out["vote_gas_per_vote_reveal"] - base["vote_gas_per_vote"])
        for n in (10, 100):
            log(f"full round with {n} contributors (k=3)")
            r = measure_round(chain, n)
            result[f"tx_per_round_{n}"] = r["tx"]
            result[f"round_{n}"] = r
        result["targets"] = {
            "submit_gas_per_contributor": TARGET_SUBMIT,
            "vote_gas_per_vote": TARGET_VOTE,
        }
        # with reveals a submission costs its share of the batch and of the reveal, whose
        # fixed part (one more transaction and the seed's slot) spreads over n
        for out in (result, result["reveal_100"]):
            out["meets_targets_reveal"] = (
                out["submit_gas_per_contributor_reveal"] + out["reveal_gas_per_share"]
                <= TARGET_SUBMIT and out["vote_gas_per_vote_reveal"] <= TARGET_VOTE)
        result["meets_targets"] = (
            result["submit_gas_per_contributor"] <= TARGET_SUBMIT
            and result["vote_gas_per_vote"] <= TARGET_VOTE
            and result["tx_per_round_10"] == result["tx_per_round_100"]
        )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value}")


if __name__ == "__main__":
    main()
