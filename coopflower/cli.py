"""The ``coopflower`` command: ``demo`` (the main job on embedded defaults), ``audit`` (replay
rounds from chain and storage), ``devnet`` (a local chain and IPFS node), ``watch`` (a node
sends the votes a relayer left out) and ``deposit`` (a node pays its own deposits)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run one subcommand; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="coopflower", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the main job on the embedded chain and store")
    demo.add_argument("--json", action="store_true", help="also print a JSON summary")
    audit = sub.add_parser("audit", help="replay every round from chain and storage alone")
    from coopflower.audit import add_arguments

    add_arguments(audit)
    devnet = sub.add_parser("devnet", help="start a local chain and IPFS node, deploy, wait")
    devnet.add_argument("--chain", choices=("anvil", "clique"), default="anvil")
    devnet.add_argument("--no-ipfs", action="store_true", help="do not start a js-ipfs daemon")
    devnet.add_argument("--seconds", type=float, default=None, help="stop after this long")
    sim = sub.add_parser("simulate", help="the coordinated strategy beside FedAvg in "
                         "simulation, with some nodes attacking")
    sim.add_argument("--nodes", type=int, default=10)
    sim.add_argument("--rounds", type=int, default=3)
    sim.add_argument("--model", default="table4")
    sim.add_argument("--epochs", type=int, default=2)
    sim.add_argument("--chain", default=None, help="JSON-RPC URL (default: embedded EVM)")
    sim.add_argument("--chain-key", default=None, help="the initiator's key for --chain")
    sim.add_argument("--store", default=None, help="store directory or IPFS RPC URL")
    sim.add_argument("--out", default="results/simulate", help="folder for JSON and PNG")
    sim.add_argument("--attack", default="label-flip",
                     help="what the attackers do: label-flip (default), sign-flip, noise, "
                     "free-rider, copy, or none (no attacker, no attack-free run)")
    sim.add_argument("--attackers", type=int, default=3, help="how many nodes attack")
    watch = sub.add_parser("watch", help="send this node's votes that no relayer sent")
    watch.add_argument("--chain", required=True, help="JSON-RPC URL")
    watch.add_argument("--key-file", required=True, help="the node's key file (funded)")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between passes")
    watch.add_argument("--once", action="store_true", help="one pass, then exit")
    dep = sub.add_parser("deposit", help="top up this node's balance (its deposits) in a contract")
    dep.add_argument("--chain", required=True, help="JSON-RPC URL")
    dep.add_argument("--key-file", required=True, help="the node's key file (funded)")
    dep.add_argument("--contract", required=True, help="the CoopLedger's address")
    dep.add_argument("--wei", type=int, required=True,
                     help="the balance to hold (only the shortfall is sent)")
    args = parser.parse_args(argv)
    if args.command == "deposit":
        from coopflower.client.funds import run_top_up

        return run_top_up(args.chain, args.key_file, args.contract, args.wei)
    if args.command == "watch":
        from coopflower.client.watch import run_watch

        return run_watch(args.chain, args.key_file, args.interval, args.once)
    if args.command == "simulate":
        from coopflower.simulate import SimulateError, run_simulate

        try:
            return run_simulate(args.nodes, args.rounds, args.model, args.epochs, args.chain,
                                args.chain_key, args.store, args.out, attack=args.attack,
                                attackers=args.attackers)
        except SimulateError as exc:
            parser.error(str(exc))
    if args.command == "demo":
        from coopflower.demo import run_demo

        return run_demo(as_json=args.json)
    if args.command == "audit":
        from coopflower.audit import run_audit

        return run_audit(args.chain, args.contract, args.store, args.task)
    if args.command == "devnet":
        from coopflower.devnet import run_devnet

        return run_devnet(args.chain, not args.no_ipfs, args.seconds)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
