"""What ``coopflower simulate`` prints and writes: a table per round, each coordinated round's
accepted and rejected models (which node, whether it attacked), ``summary.json`` and
``accuracy.png`` (FedAvg with no attacker, FedAvg under attack, the coordinated round under
attack)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coopflower.simulate import SimulationSummary
    from coopflower.strategy import CoordinatedStrategy

__all__ = ["addresses_by_partition", "coop_decisions", "report"]

NOT_ON_CHAIN = "NOT_ON_CHAIN"


def addresses_by_partition(home: Path, nodes: int) -> dict[str, int]:
    """Registered address (lower case) -> partition id, from the nodes' key files
    (``<home>/keys/node-<partition id>.json``, as ``coopflower.client.mod.key_path`` names
    them for a simulated node)."""
    from coopflower.client.keys import load_or_create_key

    out = {}
    for pid in range(nodes):
        path = home / "keys" / f"node-{pid}.json"
        if path.exists():
            out[load_or_create_key(path).address.lower()] = pid
    return out


def coop_decisions(coop: CoordinatedStrategy, home: Path, nodes: int,
                   attackers: Sequence[int]) -> list[list[dict[str, Any]]]:
    """Per coordinated round, the decision on each node's model, in partition order: its
    submission's status on chain (``accepted`` only when ``ACCEPTED``: rejected, without
    quorum or unrevealed models are not aggregated), or ``NOT_ON_CHAIN`` with the round's
    failure lines for that node (e.g. a copy of a model already on chain, which the contract
    skips)."""
    pid_of = addresses_by_partition(home, nodes)
    node_pid = {nid: pid_of.get(addr.lower()) for nid, addr in coop.addresses.items()}
    out = []
    for rep in coop.reports:
        rows: dict[int, dict[str, Any]] = {}
        for contributor, _cid, status, yes, cast in rep.submissions.values():
            pid = pid_of.get(str(contributor).lower())
            if pid is None:
                continue
            rows[pid] = {"node": pid, "contributor": str(contributor), "status": status,
                         "decision": "accepted" if status == "ACCEPTED" else "rejected",
                         "yes": int(yes), "votes": int(cast), "reason": ""}
        for pid in range(nodes):
            if pid not in rows:
                why = [f"{f.phase}: {f.reason}" for f in rep.failures
                       if node_pid.get(f.node_id) == pid]
                addr = next((a for a, p in pid_of.items() if p == pid), "")
                rows[pid] = {"node": pid, "contributor": addr, "status": NOT_ON_CHAIN,
                             "decision": "rejected", "yes": 0, "votes": 0,
                             "reason": "; ".join(why) or "no submission on chain"}
        out.append([{**rows[p], "malicious": p in attackers} for p in sorted(rows)])
    return out


def _at(curve: list[float], r: int) -> float:
    return curve[r] if r < len(curve) else float("nan")


def _table(summary: SimulationSummary) -> None:
    clean = bool(summary.attack_free_accuracy)
    print(f"\n{'round':>5} " + (f"{'no-attack acc':>13} " if clean else "")
          + f"{'FedAvg acc':>10} {'coop acc':>9} {'coop tx':>8} {'FedAvg MB':>10} "
          f"{'coop MB':>8} {'accepted':>9}")
    for r in range(len(summary.coop_accuracy)):
        row = [f"{r:>5}"] + ([f"{_at(summary.attack_free_accuracy, r):>13.4f}"] if clean else [])
        row += [f"{_at(summary.fedavg_accuracy, r):>10.4f}", f"{summary.coop_accuracy[r]:>9.4f}"]
        if r == 0:
            row += [f"{'-':>8}", f"{'-':>10}", f"{'-':>8}", f"{'-':>9}"]
        else:
            row += [f"{summary.coop_tx_per_round[r - 1]:>8}",
                    f"{summary.fedavg_bytes_per_round[r - 1] / 1e6:>10.2f}",
                    f"{summary.coop_bytes_per_round[r - 1] / 1e6:>8.2f}",
                    f"{summary.coop_accepted_per_round[r - 1]:>9}"]
        print(" ".join(row))


def _decisions(summary: SimulationSummary) -> None:
    """Each round's accepted and rejected models: FedAvg's (all it received) and the
    coordinated round's, node by node."""
    bad = set(summary.attackers)
    for r, rows in enumerate(summary.coop_decisions, start=1):
        averaged = (summary.fedavg_averaged_per_round[r - 1]
                    if r <= len(summary.fedavg_averaged_per_round) else 0)
        whose = "the attacker's" if len(bad) == 1 else f"the {len(bad)} attackers'"
        among = f", {whose} among them" if bad and averaged == summary.nodes else ""
        print(f"\nround {r}: FedAvg accepted all {averaged} models it received{among}, "
              "rejected none")
        acc = [d for d in rows if d["decision"] == "accepted"]
        rej = [d for d in rows if d["decision"] == "rejected"]
        print(f"round {r}: coordinated accepted {len(acc)} "
              f"({sum(d['malicious'] for d in acc)} malicious), rejected {len(rej)} "
              f"({sum(d['malicious'] for d in rej)} malicious)")
        for d in rows:
            who = f"MALICIOUS ({summary.attack})" if d["malicious"] else "honest"
            votes = f"{d['yes']}/{d['votes']} yes" if d["votes"] else "no votes"
            why = f"  {d['reason']}" if d["reason"] else ""
            print(f"  node {d['node']:>2} {d['contributor'][:10]:<10} {d['decision']:<8} "
                  f"{d['status']:<12} {votes:<9} {who}{why}")


def _plot(summary: SimulationSummary, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    under = f", {len(summary.attackers)} attacking" if summary.attackers else ""
    if summary.attack_free_accuracy:
        ax.plot(summary.attack_free_accuracy, ":", color="grey", label="FedAvg, no attacker")
    ax.plot(summary.fedavg_accuracy, "o-", label=f"FedAvg (Flower){under}")
    ax.plot(summary.coop_accuracy, "s--", label=f"coordinated (chain + votes){under}")
    ax.set_xticks(range(len(summary.coop_accuracy)))
    ax.set_xlabel("round")
    ax.set_ylabel("central accuracy (held-out digits)")
    attack = f", {len(summary.attackers)} {summary.attack}" if summary.attackers else ""
    ax.set_title(f"{summary.nodes} SuperNodes{attack}, {summary.model}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=120)
    plt.close(fig)


def report(summary: SimulationSummary, out: Path) -> None:
    """Print the table and the decisions, write ``summary.json`` and ``accuracy.png`` into
    ``out``; the last stdout line is the summary as JSON."""
    out.mkdir(parents=True, exist_ok=True)
    _table(summary)
    print(f"FedAvg logged its {summary.rounds} rounds in {summary.fedavg_tx} transactions; "
          f"contract {summary.contract}")
    if summary.attackers:
        print(f"attackers: partitions {summary.attackers} ({summary.attack}); they verify "
              "honestly")
    elif all(a == summary.nodes for a in summary.coop_accepted_per_round):
        same = summary.coop_accuracy == summary.fedavg_accuracy
        print("every model was accepted; the coordinated round averages them with equal "
              "weights (the task's rule: no contributor sets its own), FedAvg by the examples "
              "each node reports" + (", the same here (every node holds as many digits): the "
                                     "difference is who decided (signed votes on chain) and "
                                     "the audit trail" if same else ""))
    _decisions(summary)
    for failure in summary.coop_failures:
        print(f"failure: {failure}")
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=1))
    _plot(summary, out)
    print(f"wrote {out / 'summary.json'} and {out / 'accuracy.png'}")
    print(json.dumps(asdict(summary)))
