"""The set-up before the first round: connect, wait for the federation, publish the task,
make the IVHE keys, and register every node that signs its consent (one transaction)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from logging import WARNING
from typing import TYPE_CHECKING

from flwr.app import ConfigRecord
from flwr.serverapp import Grid
from flwr.supercore import log

from coopflower.ledger.eip712 import content_hash
from coopflower.strategy import wrapped
from coopflower.strategy.messaging import send_and_receive
from coopflower.strategy.replies import ReplyError, last_line, parse_registration
from coopflower.strategy.rounds import NodeFailure
from coopflower.strategy.task import StrategyError

if TYPE_CHECKING:
    from coopflower.strategy.coordinated import CoordinatedStrategy

__all__ = ["connect", "wait_for_nodes", "publish_task", "make_ivhe_keys", "register",
           "check_registered", "close_task", "setup"]


def connect(s: CoordinatedStrategy) -> None:
    """Bind the ledger: the given one, the contract at ``contract_address``, or a new
    deployment on the chain (a URL, or the embedded EVM)."""
    from coopflower.ledger.backend import connect as connect_chain
    from coopflower.ledger.contract import CoopLedger

    if s.ledger is not None:
        return
    chain = connect_chain(s.chain_url, private_key=s.private_key)
    if s.contract_address:
        s.ledger = CoopLedger.at(chain, s.contract_address)
    else:
        s.ledger = CoopLedger.deploy(chain)
        s.contract_address = s.ledger.address


def wait_for_nodes(s: CoordinatedStrategy, grid: Grid, need: int) -> list[int]:
    """Every connected node (each becomes a participant: a verifier candidate), waiting at
    most ``connect_timeout`` seconds for ``need`` of them; ``StrategyError`` when the
    federation stays too small for the task."""
    need = max(need, s.min_available_nodes, s.min_train_nodes)
    deadline = time.monotonic() + s.connect_timeout
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) >= need or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if len(node_ids) < need:
        raise StrategyError(
            f"the federation has {len(node_ids)} nodes after {s.connect_timeout:.0f} s; "
            f"the task needs at least {need} (k={s.task.k} verifiers besides each "
            "contributor): run more SuperNodes (in a simulation: flwr run . --federation-config "
            f"'num-supernodes={need}') or ask for fewer verifiers (TaskConfig(k=...))")
    return node_ids


def publish_task(s: CoordinatedStrategy, num_rounds: int, num_nodes: int) -> int:
    """The task's id: the given one, or a new task published with escrow for every round."""
    from coopflower.ledger.contract import TaskParams

    if s.task_id is not None:
        return s.task_id
    t = s.task
    params = TaskParams(
        spec_hash=content_hash(t.spec_text().encode()),
        k=t.k, quorum=t.quorum, min_accuracy_bps=t.threshold_bps(),
        submit_blocks=t.submit_blocks, vote_blocks=t.vote_blocks,
        max_submissions=t.max_submissions or max(num_nodes, 1),
        reward=t.reward, verifier_fee=t.verifier_fee, min_deposit=t.min_deposit,
        penalty_wrong_vote=t.penalty_wrong_vote, penalty_no_vote=t.penalty_no_vote,
        reveal_blocks=t.reveal_blocks, grace_blocks=t.grace_blocks,
    )
    s.task_id = int(s.ledger.publish_task(params, params.escrow_per_round() * num_rounds))
    s.published_task = True
    return s.task_id


def close_task(s: CoordinatedStrategy) -> None:
    """After the last round: close the task the strategy published (its unspent escrow returns
    to the initiator) and release every participant's deposit to its own balance on the
    contract, from where each node withdraws it: nobody's money stays locked in the task."""
    task_id = int(s.task_id or 0)
    last = s.reports[-1].server_round if s.reports else 0  # a resumed run starts later
    with s.phases.phase(last, "close") as rec:
        s.ledger.close_task(task_id)
        accounts = s.ledger.participants(task_id)
        if accounts:
            s.ledger.release_deposits(task_id, accounts)
        rec.detail = f"task {task_id} closed; {len(accounts)} deposits released to their owners"


def make_ivhe_keys(s: CoordinatedStrategy) -> None:
    """The initiator's IVHE key pair; the public key is published by CID."""
    from coopflower.crypto import IVHEParams, make_keys, public_key_to_bytes

    # element-wise keys encrypt plaintexts of length 1: the same for every model and layer
    s.secret_key, pk = make_keys("elementwise", 1, IVHEParams())
    s.ivhe_key_cid = s.open_store().put(public_key_to_bytes(pk)).to_bytes()


def register(s: CoordinatedStrategy, grid: Grid, node_ids: Sequence[int],
             timeout: float) -> list[NodeFailure]:
    """Ask every node for its signed consent and register the new ones in one transaction."""
    deposit = s.task.min_deposit
    cfg = ConfigRecord({**s.base_config(), "deposit": str(deposit)})
    msgs = [wrapped.register_message(nid, cfg) for nid in node_ids]
    s.meter.add_sent(0, msgs)
    replies = send_and_receive(grid, msgs, timeout=timeout)
    s.meter.add_received(0, replies)
    failures, regs = [], []
    seen: set[str] = set()
    known = {a.lower() for a in s.ledger.participants(s.task_id)}
    for msg in replies:
        nid = msg.metadata.src_node_id
        if msg.has_error():
            failures.append(NodeFailure("register", nid, str(msg.error.reason)))
            continue
        try:
            reg, model = parse_registration(msg, s.ledger.domain, int(s.task_id or 0), deposit)
        except ReplyError as exc:
            failures.append(NodeFailure("register", nid, str(exc)))
            continue
        if reg.participant.lower() in seen:
            failures.append(NodeFailure("register", nid, f"address {reg.participant} reused"))
            continue
        seen.add(reg.participant.lower())
        s.addresses[nid] = reg.participant
        s.models[nid] = model
        if reg.participant.lower() not in known:
            regs.append(reg)
    if regs:
        s.ledger.register_for(s.task_id, regs)
    return failures


def check_registered(s: CoordinatedStrategy, num_nodes: int,
                     failures: Sequence[NodeFailure]) -> None:
    """``StrategyError`` when fewer than k + 1 nodes registered, with what the others said."""
    if len(s.addresses) >= s.task.k + 1:
        return
    reasons = sorted({last_line(f.reason) for f in failures}) or ["no reply"]
    hint = " Does the ClientApp run coopflower's mod: ClientApp(mods=[coop_mod])?"
    raise StrategyError(
        f"{len(s.addresses)} of {num_nodes} nodes registered, the task needs "
        f"{s.task.k + 1} (k={s.task.k} verifiers besides each contributor); "
        f"the others said: {'; '.join(reasons)[:600]}.{hint}")


def setup(s: CoordinatedStrategy, grid: Grid, num_rounds: int,
          timeout: float) -> list[NodeFailure]:
    """Connect, wait for k + 1 nodes, publish the task, register every node; returns the
    registration failures (``StrategyError`` when fewer than k + 1 registered)."""
    with s.phases.phase(0, "setup") as rec:
        connect(s)
        # every connected node becomes a participant (a verifier candidate); each round
        # then samples its contributors
        node_ids = wait_for_nodes(s, grid, s.task.k + 1)
        task_id = publish_task(s, num_rounds, len(node_ids))
        if s.encryption and s.secret_key is None:
            make_ivhe_keys(s)
        failures = register(s, grid, node_ids, timeout)
        rec.detail = (f"contract {s.ledger.address}, task {task_id}, "
                      f"{len(s.addresses)} nodes registered")
    for f in failures:
        log(WARNING, "node %d failed to register: %s", f.node_id, f.reason)
    check_registered(s, len(node_ids), failures)
    return failures
