"""Issue 11, attack 3: a censored vote. The relayer leaves one assigned verifier's "yes" out of
``submitVotes``; the node's watcher (``coopflower watch``, a real process with the node's own
key) sends it from the node's outbox before the deadline, and the node's own transaction decides
the outcome. On anvil (a real JSON-RPC node)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from coopflower.client.outbox import OutboxVote, load_entries, outbox_path, record_entries
from coopflower.client.watch import send_dropped
from coopflower.ledger import Chain, Status, connect
from coopflower.ledger.nodes import ChainNode
from coopflower.ledger.records import Settlement
from tests.fixtures_chain import Scenario, anvil_node, new_scenario  # noqa: F401

pytestmark = pytest.mark.node


def _one_submission(node: ChainNode) -> tuple[Chain, Scenario, int, int, list[str], bytes]:
    """A task on anvil with one submission in its first round, awaiting its votes: the chain,
    the scenario, the round, the submission id, its verifiers and its model digest."""
    chain = connect(node.url, private_key=node.private_keys[0])
    sc = new_scenario(chain, n=5, vote_blocks=30)
    rnd = sc.ledger.open_round(sc.task_id).round
    sc.ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0]), close=True)
    (sid, verifiers), = sc.ledger.assignments(sc.task_id, rnd).verifiers.items()
    digest = sc.ledger.submissions(sc.task_id, rnd)[0].model_digest
    return chain, sc, rnd, sid, verifiers, digest


def _censored_round(node: ChainNode, tmp: Path, watcher: bool) -> tuple[Settlement, str]:
    """One submission, verifiers yes / no / yes; the relayer drops the last verifier's yes.
    With ``watcher`` that verifier's node sends its own vote from its outbox."""
    chain, sc, rnd, sid, verifiers, digest = _one_submission(node)
    led, t = sc.ledger, sc.task_id
    votes = [sc.vote(rnd, sid, digest, v, ok, 9500) for v, ok in zip(
        verifiers, (True, False, True), strict=True)]
    censored = verifiers[2]
    tmp.mkdir(parents=True)
    key_file = tmp / f"node-{censored}.json"
    key = sc.key_of(censored)
    key_file.write_text(json.dumps({"address": censored, "private_key": key}))
    record_entries(outbox_path(key_file), [OutboxVote(chain.chain_id, led.address, votes[2])])
    led.submit_votes(t, rnd, votes[:2])  # the censoring relayer
    if watcher:
        chain.send_value(censored, 10**17)  # the opted-in node holds ETH for gas
        out = subprocess.run(
            [sys.executable, "-m", "coopflower", "watch", "--chain", node.url,
             "--key-file", str(key_file), "--once"],
            capture_output=True, text=True, timeout=120, check=True).stdout
        assert f"round {rnd} submission {sid} that no relayer had sent" in out, out
        assert load_entries(outbox_path(key_file)) == []  # sent: it leaves the outbox
    chain.wait_for_block(led.round(t, rnd).vote_end + 1)
    return led.settle(t, rnd), censored


def test_a_censored_vote_is_sent_by_the_node_itself(anvil_node: ChainNode,  # noqa: F811
                                                     tmp_path: Path) -> None:
    """Before (and still, without a watcher): rejected 1/2 and the censored verifier loses
    ``penalty_no_vote``. With the node's watcher: accepted 2/3 by its own transaction, the
    censored verifier is paid its fee and keeps its deposit."""
    censored_result, who = _censored_round(anvil_node, tmp_path / "a", watcher=False)
    (sub,) = censored_result.submissions
    assert (sub.status, sub.yes, sub.cast) == (Status.REJECTED, 1, 2)
    assert censored_result.penalized.get(who, 0) > 0

    result, who = _censored_round(anvil_node, tmp_path / "b", watcher=True)
    (sub,) = result.submissions
    assert (sub.status, sub.yes, sub.cast) == (Status.ACCEPTED, 2, 3)
    assert result.penalized.get(who, 0) == 0 and result.paid.get(who, 0) > 0


def test_the_watcher_waits_for_the_relayer_and_never_sinks_its_batch(
        anvil_node: ChainNode, tmp_path: Path) -> None:  # noqa: F811
    """Before the relayer's batch the watcher keeps its votes (an honest relayer sends them);
    a vote already on chain is not sent again; the relayer's batch after a node's own vote
    skips it as a second ballot instead of reverting."""
    chain, sc, rnd, sid, verifiers, digest = _one_submission(anvil_node)
    led, t = sc.ledger, sc.task_id
    votes = [sc.vote(rnd, sid, digest, v, True) for v in verifiers]
    node_chain = chain.with_account(sc.key_of(verifiers[0]))
    chain.send_value(verifiers[0], 10**17)
    from coopflower.ledger.contract import CoopLedger

    as_node = CoopLedger.at(node_chain, led.address)
    entries = [OutboxVote(chain.chain_id, led.address, votes[0])]
    report, kept = send_dropped(as_node, entries)
    assert (report.sent, report.waiting, kept) == ([], 1, entries)  # no batch yet: wait
    chain.wait_for_block(led.round(t, rnd).vote_end - 2)  # the deadline is near: send
    report, kept = send_dropped(as_node, entries)
    assert [v.verifier for v in report.sent] == [verifiers[0]] and kept == []
    report, _ = send_dropped(as_node, entries)
    assert report.sent == [] and report.on_chain == 1
    late = led.submit_votes(t, rnd, votes)  # the relayer's batch, after the node's own vote
    assert [(s.who, s.reason) for s in late.skipped] == [(verifiers[0], "AlreadyVoted")]
    assert len(late.recorded) == 2


def test_a_node_tops_up_its_own_balance_with_the_cli(anvil_node: ChainNode,  # noqa: F811
                                                      tmp_path: Path) -> None:
    """``coopflower deposit``: a node's own money in the contract, from which its deposit is
    taken when the initiator registers it (tests/test_attacks_contract.py)."""
    from coopflower.client.keys import load_or_create_key
    from coopflower.ledger.contract import CoopLedger

    chain = connect(anvil_node.url, private_key=anvil_node.private_keys[0])
    ledger = CoopLedger.deploy(chain)
    key_file = tmp_path / "node.json"
    node = load_or_create_key(key_file).address
    chain.send_value(node, 10**17)
    out = subprocess.run(
        [sys.executable, "-m", "coopflower", "deposit", "--chain", anvil_node.url,
         "--key-file", str(key_file), "--contract", ledger.address, "--wei", str(10**15)],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert ledger.balance_of(node) == 10**15 and f"{node} holds {10**15} wei" in out
    again = subprocess.run(  # at every start: only the shortfall is sent (none here)
        [sys.executable, "-m", "coopflower", "deposit", "--chain", anvil_node.url,
         "--key-file", str(key_file), "--contract", ledger.address, "--wei", str(10**15)],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert ledger.balance_of(node) == 10**15 and f"{node} holds {10**15} wei" in again


def test_a_censored_submission_is_sent_by_the_node_itself(anvil_node: ChainNode,  # noqa: F811
                                                          tmp_path: Path) -> None:
    """The relayer leaves node 3's signed submission out of its batch and asks to close: the
    window stays open (grace), node 3's watcher sends the submission from its outbox, and the
    round then closes with it on chain, to be verified like the others."""
    from coopflower.client.outbox import OutboxSubmission
    from coopflower.ledger.rounds import submission_items

    chain = connect(anvil_node.url, private_key=anvil_node.private_keys[0])
    sc = new_scenario(chain, n=4, vote_blocks=30, grace_blocks=20)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    subs = sc.submissions(rnd, range(4))
    left_out = subs[3]
    key_file = tmp_path / "node-3.json"
    key_file.write_text(json.dumps({"address": sc.address(3), "private_key": sc.keys[3]}))
    record_entries(outbox_path(key_file), [OutboxSubmission(chain.chain_id, led.address, left_out)])
    led._send("submitBatch", [t, rnd, submission_items(subs[:3]), True])  # the censoring relayer
    assert led.round(t, rnd).state == 1  # not closed: node 3 is missing and the grace runs
    chain.send_value(sc.address(3), 10**17)
    out = subprocess.run(
        [sys.executable, "-m", "coopflower", "watch", "--chain", anvil_node.url,
         "--key-file", str(key_file), "--once"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"submission on task {t} round {rnd}" in out and "no relayer had sent" in out, out
    assert load_entries(outbox_path(key_file)) == []
    led.close_submissions(t, rnd)  # everyone in: closes at once
    models = led.round_models(t, rnd)
    assert sc.address(3).lower() in {m[0].lower() for m in models.values()}
    assert len(models) == 4 and led.round(t, rnd).state == 2


def _censored_share_round(node: ChainNode, tmp: Path, watcher: bool) -> tuple[Settlement, str]:
    """Four submissions in a task with seed reveals; the relayer reveals three shares and leaves
    node 3's out. With ``watcher`` node 3's watcher (a real process) reveals its own share,
    derived from its key as its mod derives it. Every submission then gets its verifiers' yes."""
    from coopflower.client.outbox import OutboxSubmission

    chain = connect(node.url, private_key=node.private_keys[0])
    sc = new_scenario(chain, n=4, vote_blocks=30, reveal_blocks=10)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    subs = sc.submissions(rnd, range(4))
    tmp.mkdir(parents=True)
    key_file = tmp / "node-3.json"
    key_file.write_text(json.dumps({"address": sc.address(3), "private_key": sc.keys[3]}))
    record_entries(outbox_path(key_file), [OutboxSubmission(chain.chain_id, led.address, subs[3])])
    led.submit_batch(t, rnd, subs, close=True)
    chain.wait_for_block(led.round(t, rnd).rand_block + 1)
    led.reveal_seeds(t, rnd, sc.shares_of(rnd, [0, 1, 2]))  # the censoring relayer
    if watcher:
        chain.send_value(sc.address(3), 10**17)
        out = subprocess.run(
            [sys.executable, "-m", "coopflower", "watch", "--chain", node.url,
             "--key-file", str(key_file), "--once"],
            capture_output=True, text=True, timeout=120, check=True).stdout
        assert "revealed the seed share of submission" in out, out
        assert load_entries(outbox_path(key_file)) == []  # the seed is fixed: nothing left
    info = led.round(t, rnd)
    chain.wait_for_block(info.reveal_end + 1)
    plan = led.assignments(t, rnd)
    digests = {s.submission: s.model_digest for s in led.submissions(t, rnd)}
    led.submit_votes(t, rnd, [sc.vote(rnd, sid, digests[sid], v, True, 9500)
                              for sid, vs in plan.verifiers.items() for v in vs])
    chain.wait_for_block(led.round(t, rnd).vote_end + 1)
    return led.settle(t, rnd), sc.address(3)


def test_a_censored_seed_share_is_revealed_by_the_node_itself(anvil_node: ChainNode,  # noqa: F811
                                                              tmp_path: Path) -> None:
    """Before (and still, without a watcher): the relayer that leaves a contributor's seed share
    out of ``revealSeeds`` settles its submission UNREVEALED, unverified, and takes
    ``penalty_no_vote`` from it. With the node's watcher: its own transaction reveals the share,
    the submission is verified and accepted, and the node is paid, not penalised."""
    censored, who = _censored_share_round(anvil_node, tmp_path / "a", watcher=False)
    status = {s.contributor.lower(): s.status for s in censored.submissions}
    assert status[who.lower()] == Status.UNREVEALED and censored.penalized.get(who, 0) > 0

    result, who = _censored_share_round(anvil_node, tmp_path / "b", watcher=True)
    status = {s.contributor.lower(): s.status for s in result.submissions}
    assert set(status.values()) == {Status.ACCEPTED}, status
    assert result.penalized.get(who, 0) == 0 and result.paid.get(who, 0) > 0
