"""Scaling of one coordinated round with the number of contributors, on a real EVM.

    python bench/scaling.py --json                               # anvil, 10,50,100,200,500
    python bench/scaling.py --json --backend embedded --sizes 10,50,100

For each size n: a fresh CoopLedger and task, n fresh eth_account keys (every contributor is
also a verifier), then the life-cycle: register (one batch) | open round, submit batch with
close, assignments (waits for the randomness block), one vote batch (k = 3, so 3 n votes),
settle, record MetaModel. Reported per size: transactions per round, gas per round and per
contributor, chain-side wall time per round (binding + node; signing excluded: nodes sign in
parallel, reported separately), and each transaction's confirmation time (send until receipt,
including gas estimation). A size whose batch does not fit one block is reported with its
error and the step that failed. The largest n whose every batch fits one block is computed from
a linear fit of each batch's gas (gas = fixed + per-item * n) over the sizes that ran.

Prints a line per size to stderr, one JSON object to stdout (with ``--json``), and writes a PNG
to results/scaling/ (ours beside the Table 3 claims of seeds/000_28a9d12aa89c3e2f.txt).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account  # noqa: E402
from gas import _cid, _keys  # noqa: E402  (bench/gas.py: CIDv1-shaped bytes, fresh keys)

from coopflower.ledger import (  # noqa: E402
    Chain,
    CoopLedger,
    LedgerError,
    TaskParams,
    connect,
    sign_registration,
    sign_submission,
    sign_vote,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (10, 50, 100, 200, 500)
K = 3
# seeds/000_28a9d12aa89c3e2f.txt, Table 3: nodes -> transaction processing time (ms)
SEED_TABLE3_MS = {10: 50, 50: 80, 100: 120, 200: 200, 500: 400}
# batches whose gas grows with n (the others are constant)
BATCH_STEPS = ("register", "submit", "votes", "settle")
T = TypeVar("T")


def log(msg: str) -> None:
    print(f"[scaling] {msg}", file=sys.stderr, flush=True)


@dataclass
class SizeResult:
    """One round with ``n`` contributors.

    ok: every step ran; else ``failed_step`` and ``error`` say where and why.
    tx_per_round: transactions from open round to record MetaModel (registration excluded:
        once per task). gas_per_round: their gas. chain_s: wall time of the round's chain
        side (binding, node, assignment wait). sign_s: total signing time of all nodes;
        sign_s_per_node: what one node signs (1 submission, k votes), in parallel in reality.
    step_gas / step_s: per step. tx_confirm_ms: per transaction, send until receipt.
    """

    n: int
    ok: bool = True
    failed_step: str | None = None
    error: str | None = None
    votes: int = 0
    tx_per_round: int = 0
    gas_per_round: int = 0
    gas_per_contributor: float = 0.0
    register_gas: int = 0
    chain_s: float = 0.0
    sign_s: float = 0.0
    sign_s_per_node: float = 0.0
    tx_confirm_ms: dict[str, float] = field(default_factory=dict)
    tx_confirm_ms_mean: float = 0.0
    tx_confirm_ms_max: float = 0.0
    step_gas: dict[str, int] = field(default_factory=dict)
    step_s: dict[str, float] = field(default_factory=dict)
    max_tx_gas: int = 0
    accepted: int = 0
    register_chunk: int | None = None
    chain_s_runs: list[float] = field(default_factory=list)
    chain_ms_per_contributor: float = 0.0


class _Round:
    """Runs and times the steps of one round; remembers the first failure."""

    def __init__(self, res: SizeResult) -> None:
        self.res = res

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        except LedgerError as exc:
            self.res.ok, self.res.failed_step = False, name
            self.res.error = f"{type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            self.res.step_s[name] = round(time.perf_counter() - t0, 4)

    def signing(self, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        out = fn()
        self.res.sign_s += time.perf_counter() - t0
        return out


def run_size(
    chain: Chain,
    n: int,
    k: int = K,
    register_chunk: int | None = None,
    register_only: bool = False,
) -> SizeResult:
    """One full round with ``n`` contributors (each also a verifier).

    Args:
        chain: the connection (sending account = initiator and authority). n: contributors.
        k: verifiers per submission. register_chunk: register in batches of this many
            (None: one batch; registration is once per task, outside the round).
        register_only: stop after registration (to probe that batch's limit).
    Returns: the :class:`SizeResult` (``ok=False`` with the error if a batch failed).
    """
    res = SizeResult(n, register_chunk=register_chunk)
    r = _Round(res)
    gas: dict[str, int] = res.step_gas
    try:
        led = CoopLedger.deploy(chain)
        params = TaskParams(
            spec_hash=os.urandom(32), k=k, quorum=2, max_submissions=n,
            submit_blocks=500, vote_blocks=500,
        )  # fmt: skip
        task = led.publish_task(params, params.escrow_per_round())
        keys = _keys(n)
        key_of = {Account.from_key(key).address: key for key in keys}
        regs = r.signing(
            lambda: [sign_registration(key, led.domain, task, params.min_deposit) for key in keys]
        )
        res.sign_s = 0.0  # registration is once per task, not part of the round's signing
        chunk = register_chunk or n
        with r.step("register"):
            res.register_gas = sum(
                led.register_for(task, regs[i : i + chunk]).gas_used for i in range(0, n, chunk)
            )
        if chunk >= n:  # only a single batch is a point of the register batch's gas line
            gas["register"] = res.register_gas
        if register_only:
            return res
        tx0 = chain.tx_count
        with r.step("open"):
            rnd = led.open_round(task).round
        gas["open"] = _last_gas(chain)
        # distinct, well-formed CIDs (CIDv1 raw, sha2-256) and content hashes
        subs = r.signing(
            lambda: [
                sign_submission(key, led.domain, task, rnd, _cid(), os.urandom(32)) for key in keys
            ]
        )
        with r.step("submit"):
            gas["submit"] = led.submit_batch(task, rnd, subs, close=True).gas_used
        with r.step("assign"):
            plan = led.assignments(task, rnd)
        votes = r.signing(
            lambda: [
                sign_vote(key_of[v], led.domain, task, rnd, s, subs[s].model_digest,
                          s % 4 != 0, 9000)
                for s, vs in plan.verifiers.items()
                for v in vs
            ]
        )  # fmt: skip
        res.votes = len(votes)
        with r.step("votes"):
            gas["votes"] = led.submit_votes(task, rnd, votes).gas_used
        with r.step("settle"):
            settled = led.settle(task, rnd)
        gas["settle"] = settled.tx.gas_used
        res.accepted = settled.accepted
        with r.step("record_metamodel"):
            gas["record_metamodel"] = led.record_metamodel(
                task, rnd, _cid(), os.urandom(32)
            ).gas_used
        res.tx_per_round = chain.tx_count - tx0
    except LedgerError:
        chain.resync()
    round_steps = [s for s in res.step_s if s != "register"]
    res.chain_s = round(sum(res.step_s[s] for s in round_steps), 4)
    res.gas_per_round = sum(g for s, g in gas.items() if s != "register")
    res.gas_per_contributor = round(res.gas_per_round / n, 1)
    res.max_tx_gas = max(gas.values(), default=0)
    res.sign_s = round(res.sign_s, 4)
    res.sign_s_per_node = round(res.sign_s / n, 6)
    res.chain_ms_per_contributor = round(1000 * res.chain_s / n, 3)
    # every step but "assign" (reads and a mined block) is exactly one transaction
    res.tx_confirm_ms = {
        s: round(1000 * res.step_s[s], 2) for s in round_steps if s != "assign" and s in gas
    }
    conf = list(res.tx_confirm_ms.values())
    res.tx_confirm_ms_mean = round(sum(conf) / len(conf), 2) if conf else 0.0
    res.tx_confirm_ms_max = max(conf, default=0.0)
    return res


def _last_gas(chain: Chain) -> int:
    block = chain.w3.eth.get_block("latest", full_transactions=False)
    txs = block["transactions"]
    return int(chain.w3.eth.get_transaction_receipt(txs[-1])["gasUsed"])  # type: ignore[arg-type]


def fit_linear(points: Sequence[tuple[int, int]]) -> tuple[float, float] | None:
    """Least-squares ``gas = a + b n``.

    Args: points: (n, gas) pairs. Returns: (a, b), or None with fewer than 2 distinct n.
    """
    if len({n for n, _ in points}) < 2:
        return None
    m = len(points)
    sx = sum(n for n, _ in points)
    sy = sum(g for _, g in points)
    sxx = sum(n * n for n, _ in points)
    sxy = sum(n * g for n, g in points)
    b = (m * sxy - sx * sy) / (m * sxx - sx * sx)
    return (sy - b * sx) / m, b


def max_contributors(results: Sequence[SizeResult], tx_gas_cap: int) -> dict[str, Any]:
    """The largest n whose batches fit ``tx_gas_cap``, from a linear fit per batch.

    Returns: per batch its fit (fixed gas, gas per contributor) and largest n; ``n_round``
    the minimum over the round's batches (submit, votes, settle), ``n_register`` the single
    registration batch's (once per task, may be split), ``n`` the smaller; None when fewer
    than two sizes measured a batch.
    """
    out: dict[str, Any] = {"tx_gas_cap": tx_gas_cap, "batches": {}}
    for step in BATCH_STEPS:
        pts = [(r.n, r.step_gas[step]) for r in results if step in r.step_gas]
        fit = fit_linear(pts)
        if fit is None or fit[1] <= 0:
            continue
        a, b = fit
        n_max = math.floor((tx_gas_cap - a) / b)
        out["batches"][step] = {"fixed_gas": round(a), "gas_per_n": round(b, 1), "n_max": n_max}
    batches = out["batches"]
    rnd = {s: v["n_max"] for s, v in batches.items() if s != "register"}
    out["n_round"] = min(rnd.values()) if rnd else None
    out["limiting_round_batch"] = min(rnd, key=lambda s: rnd[s]) if rnd else None
    out["n_register"] = batches["register"]["n_max"] if "register" in batches else None
    both = [v for v in (out["n_round"], out["n_register"]) if v is not None]
    out["n"] = min(both) if both else None
    return out


def summarize(results: Sequence[SizeResult], backend: str, tx_gas_cap: int) -> dict[str, Any]:
    """The JSON object: per size figures, ratios against the smallest size, the seed's claims.

    Args: results: one per size, ascending n. backend: its name. tx_gas_cap: gas a transaction
        may use (block gas limit on anvil, 90 % of it on the embedded EVM).
    Returns: a JSON-ready dict.
    """
    base = results[0]
    out: dict[str, Any] = {
        "backend": backend,
        "k": K,
        "sizes": [r.n for r in results],
        "baseline_n": base.n,
        "tx_gas_cap": tx_gas_cap,
        "per_size": {str(r.n): asdict(r) for r in results},
        "tx_per_round": {str(r.n): r.tx_per_round for r in results},
        "failed": {
            str(r.n): {"step": r.failed_step, "error": r.error} for r in results if not r.ok
        },
    }
    ok = [r for r in results if r.ok]
    out["tx_per_round_constant"] = len({r.tx_per_round for r in ok}) == 1 and len(ok) > 1
    for r in results[1:]:
        if not (r.ok and base.ok):
            continue
        tag = f"{r.n}_vs_{base.n}"
        out[f"chain_s_ratio_{tag}"] = round(r.chain_s / base.chain_s, 3)
        out[f"gas_per_round_ratio_{tag}"] = round(r.gas_per_round / base.gas_per_round, 3)
        out[f"gas_per_contributor_ratio_{tag}"] = round(
            r.gas_per_contributor / base.gas_per_contributor, 3
        )
        out[f"tx_confirm_ms_mean_ratio_{tag}"] = round(
            r.tx_confirm_ms_mean / base.tx_confirm_ms_mean, 3
        )
    seed_base = SEED_TABLE3_MS.get(base.n)
    out["seed_table3"] = {
        "source": "seeds/000_28a9d12aa89c3e2f.txt Table 3 (transaction processing time, ms)",
        "ms": {str(n): ms for n, ms in SEED_TABLE3_MS.items()},
        "ours_tx_confirm_ms_mean": {str(r.n): r.tx_confirm_ms_mean for r in ok},
        "ours_chain_ms_per_round": {str(r.n): round(1000 * r.chain_s, 1) for r in ok},
        "ours_chain_ms_per_contributor": {str(r.n): r.chain_ms_per_contributor for r in ok},
        "seed_ratio_vs_10": {str(n): round(ms / seed_base, 2) for n, ms in SEED_TABLE3_MS.items()}
        if seed_base
        else None,
    }
    out["max_contributors_one_block"] = max_contributors(results, tx_gas_cap)
    return out


def plot(summary: dict[str, Any], path: Path) -> None:
    """Write the PNG: chain time per round and tx per round vs contributors, beside the seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [v for v in summary["per_size"].values() if v["ok"]]
    ns = [v["n"] for v in ok]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(ns, [1000 * v["chain_s"] for v in ok], "o-", label="coopflower: chain time / round")
    ax1.plot(ns, [v["tx_confirm_ms_mean"] for v in ok], "s-", label="coopflower: mean tx confirm")
    seed = summary["seed_table3"]["ms"]
    ax1.plot([int(n) for n in seed], list(seed.values()), "x--", label="seed Table 3: tx time")
    for n, fail in summary["failed"].items():
        ax1.axvline(int(n), color="red", ls=":", label=f"n={n}: {fail['step']} failed")
    ax1.set_xlabel("contributors (= verifiers)")
    ax1.set_ylabel("ms")
    ax1.set_title(f"time ({summary['backend']})")
    ax1.legend(fontsize=8)
    ax2.plot(ns, [v["tx_per_round"] for v in ok], "o-", label="coopflower tx / round")
    ax2.set_ylim(0, max([v["tx_per_round"] for v in ok] + [1]) + 2)
    ax2.set_xlabel("contributors (= verifiers)")
    ax2.set_ylabel("transactions per round")
    ax2.set_title(f"transactions per round (k={summary['k']})")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_sizes(text: str) -> list[int]:
    """Returns: the sorted distinct sizes of "10,50,100". Raises: ValueError on bad input."""
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError as exc:
        raise ValueError(f"--sizes: expected integers like 10,50,100, got {text!r}") from exc
    if not sizes or sizes[0] < K + 1:
        raise ValueError(f"--sizes: need at least one size, each >= k + 1 = {K + 1}: {text!r}")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--backend", choices=["embedded", "anvil"], default="anvil")
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--repeats", type=int, default=3, help="rounds per size (median time)")
    ap.add_argument(
        "--no-probe", dest="probe", action="store_false",
        help="skip running the predicted largest sizes (and one more) to confirm the limit",
    )  # fmt: skip
    ap.add_argument("--out", type=Path, default=REPO / "results" / "scaling")
    args = ap.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        ap.error(str(exc))
    t_start = time.perf_counter()
    results: list[SizeResult] = []
    probes: dict[str, Any] = {}
    with chain_for(args.backend) as chain:
        limit = chain._block_gas_limit()
        cap = int(limit * 0.9) if chain.kind == "embedded" else limit
        for n in sizes:
            runs = [run_size(chain, n)]
            while runs[-1].ok and len(runs) < args.repeats:
                runs.append(run_size(chain, n))
            r = median_run(runs)
            results.append(r)
            log(_line(r, runs))
        if args.probe:
            probes = probe_limits(chain, results, cap)
    summary = summarize(results, args.backend, cap)
    summary["repeats"] = args.repeats
    summary["largest_n_one_block"] = probes
    summary["block_gas_limit"] = limit
    summary["total_s"] = round(time.perf_counter() - t_start, 1)
    png = args.out / f"scaling_{args.backend}.png"
    plot(summary, png)
    summary["png"] = str(png)
    log(f"linear fit of batch gas: {summary['max_contributors_one_block']}")
    for key, v in probes.items():
        log(
            f"{key}: largest that fits one block {v['measured']} (fit predicted "
            f"{v['predicted']}); n={v['first_failing_n']} fails at {v['failed_step']}: {v['error']}"
        )
    log(f"wrote {png} ({summary['total_s']} s)")
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            if key != "per_size":
                print(f"{key:40s} {value}")


def median_run(runs: Sequence[SizeResult]) -> SizeResult:
    """Returns: the run with the median chain time (the first failed run, if any failed)."""
    failed = [r for r in runs if not r.ok]
    if failed:
        return failed[0]
    out = sorted(runs, key=lambda r: r.chain_s)[len(runs) // 2]
    out.chain_s_runs = [r.chain_s for r in runs]
    return out


def find_limit(
    chain: Chain, known_ok: int, guess: int, register_only: bool
) -> tuple[int, list[SizeResult]]:
    """The largest n whose batches all fit one block, by running rounds: ``guess``, then one
    more (upwards while they fit) or a bisection down to ``known_ok``.

    Args:
        chain: the connection. known_ok: a size that ran. guess: the linear fit's limit.
        register_only: probe the single registration batch (else the round's batches, with
            registration split in two).
    Returns: (largest n that ran, every probe run).
    """
    runs: list[SizeResult] = []

    def fits(m: int) -> bool:
        chunk = None if register_only else (m + 1) // 2
        log(f"probe n={m} ({'registration batch' if register_only else 'round batches'})")
        r = run_size(chain, m, register_chunk=chunk, register_only=register_only)
        runs.append(r)
        log("  " + _line(r, [r]))
        return r.ok

    lo, hi = known_ok, None
    m, step = max(guess, known_ok + 1), 1
    if fits(m):  # gallop up until a size does not fit
        lo = m
        while hi is None:
            m, step = lo + step, step * 2
            if fits(m):
                lo = m
            else:
                hi = m
    else:  # gallop down until a size fits (the fit is only nearly linear)
        hi = m
        while True:
            m, step = max(hi - step, lo), step * 2
            if m == lo:
                break
            if fits(m):
                lo = m
                break
            hi = m
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, runs


def probe_limits(chain: Chain, results: Sequence[SizeResult], cap: int) -> dict[str, Any]:
    """Find by measurement the largest registration batch and the largest round (submit,
    votes, settle batches) that fit one block, starting from the linear fits' predictions.

    Returns: per limit the predicted and measured n, and every probe (n, ok, step, error,
    largest transaction's gas).
    """
    fit = max_contributors(results, cap)
    out: dict[str, Any] = {}
    for key, register_only in (("n_register", True), ("n_round", False)):
        guess = fit.get(key)
        done = [r.n for r in results if r.ok]
        if guess is None or not done:
            continue
        n, runs = find_limit(chain, max(done), guess, register_only)
        fails = [r for r in runs if not r.ok]
        first_fail = min(fails, key=lambda r: r.n) if fails else None
        out[key] = {
            "predicted": guess,
            "measured": n,
            "first_failing_n": first_fail.n if first_fail else None,
            "failed_step": first_fail.failed_step if first_fail else None,
            "error": first_fail.error if first_fail else None,
            "probes": [
                {
                    "n": r.n,
                    "ok": r.ok,
                    "failed_step": r.failed_step,
                    "error": r.error,
                    "max_tx_gas": r.max_tx_gas,
                    "step_gas": r.step_gas,
                }
                for r in runs
            ],
        }
    return out


def _line(r: SizeResult, runs: Sequence[SizeResult]) -> str:
    status = "ok" if r.ok else f"FAILED at {r.failed_step}: {r.error}"
    times = "/".join(f"{x.chain_s:.2f}" for x in runs)
    return (
        f"n={r.n:4d} register gas={r.register_gas:,} tx/round={r.tx_per_round} "
        f"gas/round={r.gas_per_round:,} "
        f"gas/contributor={r.gas_per_contributor:,.0f} max tx gas={r.max_tx_gas:,} "
        f"chain={r.chain_s:.2f}s (runs {times}) tx confirm mean={r.tx_confirm_ms_mean:.1f}ms "
        f"max={r.tx_confirm_ms_max:.1f}ms signing/node={1000 * r.sign_s_per_node:.2f}ms {status}"
    )


@contextmanager
def chain_for(backend: str) -> Iterator[Chain]:
    """Yields: a chain on ``backend`` ("anvil": a fresh node on loopback, stopped on exit)."""
    if backend == "anvil":
        from coopflower.ledger.nodes import anvil

        with anvil() as node:
            yield connect(node.url, private_key=node.private_keys[0])
    else:
        yield connect()


if __name__ == "__main__":
    main()
