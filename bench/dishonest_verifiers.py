"""Dishonest verifiers: how many decisions a colluding fraction of the registered nodes flips,
beside the binomial prediction, and what their deposits lose, on the real contract.

A fraction ``f`` of ``--nodes`` registered nodes colludes: as contributors they submit bad
models, as verifiers they vote to accept bad models and to reject good ones; every other
verifier votes the truth. Each round every node submits once; the contract draws ``k``
verifiers per submission (with the participants' seed shares mixed in) and settles by
majority. A decision is flipped when the contract's outcome differs from the truth. The
prediction for one decision is P(Bin(k, f) > k/2), printed as ``binomial_f``; beside it
``predicted_exact``, the same event for k verifiers drawn without replacement from the pool
the contract draws from (every participant but the contributor), averaged over honest and
colluding contributors.

    python bench/dishonest_verifiers.py --json                        # 30 nodes, 10 rounds
    python bench/dishonest_verifiers.py --nodes 12 --rounds 1 --ks 3 --fractions 0.3 --json

Progress goes to stderr (a line per configuration); the last line of stdout is one JSON object
with ``results``: per fraction and k, ``decisions``, ``flipped``, ``flip_share``,
``binomial_f`` and ``predicted_exact`` (the predictions), ``colluder_penalty_wei`` (what the
colluders' deposits lost, in all) and ``honest_penalty_wei``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from math import comb
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account  # noqa: E402

from coopflower.ledger import (  # noqa: E402
    Chain,
    CoopLedger,
    Status,
    TaskParams,
    connect,
    sign_registration,
    sign_submission,
    sign_vote,
)
from coopflower.ledger.eip712 import seed_commitment  # noqa: E402

REVEAL = 3


def log(msg: str) -> None:
    print(f"[dishonest] {msg}", file=sys.stderr, flush=True)


def majority_flip(k: int, f: float) -> float:
    """P(Bin(k, f) > k/2): the colluders hold a strict majority of a submission's k votes."""
    return sum(comb(k, j) * f**j * (1 - f) ** (k - j) for j in range(k // 2 + 1, k + 1))


def hypergeometric_flip(k: int, pool: int, colluders: int) -> float:
    """P(X > k/2) for X colluders among k verifiers drawn without replacement from ``pool``."""
    total = comb(pool, k)
    return sum(comb(colluders, j) * comb(pool - colluders, k - j)
               for j in range(k // 2 + 1, k + 1)) / total


def _round(led: CoopLedger, chain: Chain, task: int, keys: list[str], bad: set[int],
           rng: random.Random) -> tuple[int, int]:
    """One round: every node submits, verifiers vote (colluders flip), settle. Returns the
    decisions and how many the contract got wrong."""
    rnd = led.open_round(task).round
    shares = {i: rng.randbytes(32) for i in range(len(keys))}
    addr = [Account.from_key(k).address for k in keys]
    subs = [sign_submission(k, led.domain, task, rnd, b"\x01\x55\x12\x20" + os.urandom(32),
                            os.urandom(32), seed_commitment(shares[i], addr[i]))
            for i, k in enumerate(keys)]
    out = led.submit_batch(task, rnd, subs, close=True)
    index = {a.lower(): i for i, a in enumerate(addr)}
    contributor = {sid: index[s.contributor.lower()] for sid, s in out.by_id.items()}
    chain.wait_for_block(led.round(task, rnd).rand_block + 1)
    led.reveal_seeds(task, rnd, {sid: shares[i] for sid, i in contributor.items()})
    plan = led.assignments(task, rnd)
    votes = []
    for sid, verifiers in plan.verifiers.items():
        good = contributor[sid] not in bad
        for v in verifiers:
            honest = index[v.lower()] not in bad
            accept = good if honest else not good
            votes.append(sign_vote(keys[index[v.lower()]], led.domain, task, rnd, sid,
                                   out.by_id[sid].model_digest, accept, 9000))
    led.submit_votes(task, rnd, votes)
    settled = led.settle(task, rnd)
    wrong = sum((s.status == Status.ACCEPTED) != (contributor[s.submission] not in bad)
                for s in settled.submissions)
    return len(settled.submissions), wrong


def measure(chain: Chain, nodes: int, rounds: int, f: float, k: int, seed: int) -> dict[str, Any]:
    """One configuration: ``nodes`` registered, a fraction ``f`` colluding, ``k`` verifiers."""
    rng = random.Random(seed)
    led = CoopLedger.deploy(chain)
    params = TaskParams(spec_hash=os.urandom(32), k=k, quorum=k // 2 + 1,
                        max_submissions=nodes, submit_blocks=500, vote_blocks=500,
                        reveal_blocks=REVEAL, min_deposit=10**16)
    task = led.publish_task(params, params.escrow_per_round() * rounds)
    keys = ["0x" + rng.randbytes(32).hex() for _ in range(nodes)]
    led.register_for(task, [sign_registration(key, led.domain, task, params.min_deposit)
                            for key in keys])
    bad = set(rng.sample(range(nodes), round(f * nodes)))
    decisions = wrong = 0
    for _ in range(rounds):
        d, w = _round(led, chain, task, keys, bad, rng)
        decisions, wrong = decisions + d, wrong + w
    accounts = led.accounts(task, [Account.from_key(k).address for k in keys])
    lost = {i: params.min_deposit - accounts[Account.from_key(keys[i]).address].deposit
            for i in range(nodes)}
    m, share = len(bad), len(bad) / nodes
    # the contributor is never its own verifier: an honest one's pool holds m colluders of
    # nodes - 1, a colluder's m - 1; verifiers are drawn without replacement
    exact = ((1 - share) * hypergeometric_flip(k, nodes - 1, m)
             + share * hypergeometric_flip(k, nodes - 1, m - 1)) if m else 0.0
    return {"fraction": f, "k": k, "nodes": nodes, "colluders": len(bad), "rounds": rounds,
            "decisions": decisions, "flipped": wrong,
            "flip_share": round(wrong / decisions, 4) if decisions else None,
            "binomial_f": round(majority_flip(k, f), 4),
            "predicted_exact": round(exact, 4),
            "colluder_penalty_wei": sum(v for i, v in lost.items() if i in bad),
            "honest_penalty_wei": sum(v for i, v in lost.items() if i not in bad),
            "penalty_wrong_vote": params.penalty_wrong_vote}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--fractions", default="0.1,0.3")
    ap.add_argument("--ks", default="3,5,7")
    ap.add_argument("--seed", type=int, default=7, help="colluders, keys and shares")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    args = ap.parse_args()
    chain = connect()
    results = []
    for f in (float(x) for x in args.fractions.split(",")):
        for k in (int(x) for x in args.ks.split(",")):
            r = measure(chain, args.nodes, args.rounds, f, k, args.seed)
            log(f"f={f:.2f} k={k}: {r['flipped']} of {r['decisions']} decisions flipped "
                f"({r['flip_share']}; P(Bin(k, f) > k/2) {r['binomial_f']}, exact for this "
                f"pool {r['predicted_exact']}); colluders lost "
                f"{r['colluder_penalty_wei'] / 1e18:.4f} ETH, honest nodes "
                f"{r['honest_penalty_wei'] / 1e18:.4f}")
            results.append(r)
    out = {"nodes": args.nodes, "rounds": args.rounds, "results": results}
    if args.json:
        print(json.dumps(out))
    else:
        for r in results:
            print(r)


if __name__ == "__main__":
    main()
