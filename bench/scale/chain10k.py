"""The chain side of one round at 10,000 contributors on a fresh anvil, without Flower:
``bench/scaling.py``'s life-cycle (register, open, submit with close, assignments, k = 3 votes
each, settle, MetaModel) through the library's batching, then every transaction read back per
contract function (count, gas, calldata bytes, largest transaction).

Anvil keeps its 30 M block gas limit (the batches are sized for it) but runs with
``--disable-block-gas-limit``, so what does not fit a block at 10,000 (the one-transaction
settle, the one-call ``getSubmissions`` read) still runs and is measured: its gas against the
block's is in the figures (``over_block``).

    python -m bench.scale.chain10k [N]      # last stdout line: one JSON object
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv: list[str] | None = None) -> int:
    from bench.scale.round import chain_census, log
    from bench.scaling import run_size
    from coopflower.ledger import connect
    from coopflower.ledger.artifact import load_artifact
    from coopflower.ledger.nodes import anvil

    argv = sys.argv[1:] if argv is None else argv
    n = int(argv[0]) if argv else 10_000
    t0 = time.perf_counter()
    with anvil(extra_args=["--disable-block-gas-limit"]) as node:
        chain = connect(node.url, private_key=node.private_keys[0])
        first = int(chain.w3.eth.block_number) + 1
        log(f"chain side at n={n}: signing and sending (this takes minutes)")
        res = run_size(chain, n)
        census = chain_census(chain.w3, load_artifact().abi, None, first)
        limit = int(chain.w3.eth.get_block("latest")["gasLimit"])
    doc = {"n": n, "ok": res.ok, "failed_step": res.failed_step, "error": res.error,
           "block_gas_limit": limit, "chain": census, "step_s": res.step_s,
           "sign_s": res.sign_s, "accepted": res.accepted, "votes": res.votes,
           "total_s": round(time.perf_counter() - t0, 1)}
    doc["max_tx_gas"] = max((row["max_tx_gas"] for row in census.values()), default=0)
    doc["over_block"] = {fn: row["max_tx_gas"] for fn, row in census.items()
                         if row["max_tx_gas"] > limit}
    doc["max_tx_calldata"] = max((row["max_tx_calldata"] for row in census.values()),
                                 default=0)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
