"""Every custom error of contracts/CoopLedger.sol, triggered on the real contract (the embedded
EVM and anvil), by name.

The errors the other contract tests leave untriggered are triggered here, each with
``pytest.raises(..., match=...)`` naming it (through ``_reverts``). The last tests read the
.sol itself: every error it raises must be named by a ``match=`` in the contract tests, every
error it only uses as a skip reason (``X.selector`` in ``SubmissionSkipped`` / ``VoteSkipped``)
must be asserted as a ``Skipped.reason``, and none may be declared and never used: a new
error without a test fails here.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_canonical_address, to_checksum_address

from coopflower.ledger import (
    Chain,
    ContractRevertError,
    CoopLedger,
    sign_registration,
)
from coopflower.ledger.eip712 import compact_signature
from tests.fixtures_chain import (  # noqa: F401
    Scenario,
    anvil_node,
    new_scenario,
)

REPO = Path(__file__).resolve().parent.parent
SOL = REPO / "contracts/CoopLedger.sol"
TESTS = REPO / "tests"
# the tests that must name every error: the contract's own and the contract-side attacks
COVERING = sorted([*TESTS.glob("test_contract_*.py"), TESTS / "test_attacks_contract.py"])
# declared in the .sol and never raised nor used as a skip reason: nothing can trigger it
NEVER_RAISED: set[str] = set()  # UnknownRound was one: deleted (WrongRoundState says it)
HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0  # n / 2
ZERO = "0x" + "00" * 20


def _reverts(name: str) -> pytest.RaisesExc[ContractRevertError]:
    return pytest.raises(ContractRevertError, match=rf"reverted: {name}\(")


@pytest.fixture(scope="module")
def ledger(chain: Chain) -> CoopLedger:
    """One deployment per chain; each test publishes its own task on it."""
    return CoopLedger.deploy(chain)


def _as(chain: Chain, ledger: CoopLedger, key: str | None = None) -> CoopLedger:
    """The contract bound to another sender (a fresh funded key unless given)."""
    key = key or "0x" + Account.create().key.hex().removeprefix("0x")
    chain.send_value(Account.from_key(key).address, 10**17)
    return CoopLedger.at(chain.with_account(key), ledger.address)


def _closed_round(sc: Scenario) -> int:
    """A round with two submissions, closed, its randomness block mined."""
    rnd = sc.ledger.open_round(sc.task_id).round
    sc.ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0, 1]), close=True)
    sc.ledger.wait_for_randomness(sc.task_id, rnd)
    return rnd


# ------------------------------------------------------------------ tasks and registration
def test_release_deposits_of_an_open_task_is_refused(chain: Chain, ledger: CoopLedger) -> None:
    sc = new_scenario(chain, n=4, ledger=ledger)
    with _reverts("TaskNotClosed"):
        ledger.release_deposits(sc.task_id, [sc.address(0)])


def test_an_empty_registration_batch_is_refused(chain: Chain, ledger: CoopLedger) -> None:
    sc = new_scenario(chain, n=4, ledger=ledger)
    with _reverts("EmptyBatch"):
        ledger.register_for(sc.task_id, [])


def test_a_high_s_signature_recovers_nobody(chain: Chain, ledger: CoopLedger) -> None:
    """An ``s`` above n/2 (a malleable signature's twin; EIP-2098's ``vs`` has 255 bits for s,
    so only s in (n/2, 2^255) can be sent) is refused before ``ecrecover``: ``recovered`` is
    0x0. The same consent with its own low-s signature then registers."""
    sc = new_scenario(chain, n=4, ledger=ledger)
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    dep = sc.params.min_deposit
    reg = sign_registration(key, ledger.domain, sc.task_id, dep)
    r, vs = compact_signature(reg.signature)
    for s in (HALF_N + 1, (1 << 255) - 1):
        high = (s | (int.from_bytes(vs, "big") >> 255 << 255)).to_bytes(32, "big")
        with _reverts("InvalidSignature") as caught:
            ledger._send("registerFor", [sc.task_id, [(reg.participant, dep, r, high)]], value=dep)
        assert caught.value.args_by_name["recovered"] == ZERO
    ledger._send("registerFor", [sc.task_id, [(reg.participant, dep, r, vs)]], value=dep)
    assert ledger.participant(sc.task_id, reg.participant).registered


def _participant_list_slot(chain: Chain, ledger: CoopLedger, task_id: int, n: int) -> bytes:
    """The storage key of ``participantList[task_id]``'s length, found as the one
    keccak256(task_id, slot) holding the task's participant count (the layout is the
    compiler's: no slot number is assumed)."""
    found = []
    for slot in range(32):
        key = keccak(encode(["uint256", "uint256"], [task_id, slot]))
        if int.from_bytes(chain.w3.eth.get_storage_at(ledger.address, key), "big") == n:
            found.append(key)
    assert len(found) == 1, found
    return found[0]


def _set_storage(chain: Chain, address: str, key: bytes, value: int) -> None:
    """Write one storage word of a contract: ``anvil_setStorageAt`` on anvil, the pending
    state of py-evm on the embedded chain; then mine a block so that "latest" holds it."""
    if chain.kind == "embedded":
        backend = chain.w3.provider.ethereum_tester.backend  # type: ignore[attr-defined]
        state = backend.chain.get_vm().state
        state.set_storage(to_canonical_address(address), int.from_bytes(key, "big"), value)
        state.persist()
        backend.chain.header = backend.chain.header.copy(state_root=state.state_root)
    else:
        word = "0x" + value.to_bytes(32, "big").hex()
        chain.w3.provider.make_request(  # type: ignore[arg-type]
            "anvil_setStorageAt", [address, "0x" + key.hex(), word])
    chain.mine(1)


def test_the_participant_list_stops_at_2_to_the_24(chain: Chain, ledger: CoopLedger) -> None:
    """A submission's lane keeps its contributor's index in 24 bits, so a task takes at most
    2^24 participants. Registering 16.7 million is out of reach of a test: the list's length
    is set in storage to 2^24 and the next registration is refused."""
    sc = new_scenario(chain, n=4, ledger=ledger)
    length = _participant_list_slot(chain, ledger, sc.task_id, 4)
    _set_storage(chain, ledger.address, length, 1 << 24)
    key = "0x" + Account.create().key.hex().removeprefix("0x")
    reg = sign_registration(key, ledger.domain, sc.task_id, sc.params.min_deposit)
    with _reverts("TooManyParticipants"):
        ledger.register_for(sc.task_id, [reg])
    _set_storage(chain, ledger.address, length, (1 << 24) - 1)  # one place left: taken
    ledger.register_for(sc.task_id, [reg])
    assert ledger.participant(sc.task_id, reg.participant).index == (1 << 24) - 1


# ------------------------------------------------------------------ rounds
def test_a_cid_is_1_to_64_bytes(chain: Chain, ledger: CoopLedger) -> None:
    sc = new_scenario(chain, n=4, ledger=ledger)
    with _reverts("InvalidCid"):
        ledger.log_round(sc.task_id, 1, b"", bytes(32))
    rnd = ledger.open_round(sc.task_id).round
    # the library refuses to sign such a CID, so the item goes raw: the length is checked
    # before the signature
    item = (sc.address(0), os.urandom(32), bytes(32), b"\x01" * 65, bytes(32), bytes(32))
    with _reverts("InvalidCid"):
        ledger._send("submitBatch", [sc.task_id, rnd, [item], False])
    ledger.log_round(sc.task_id, 1, b"\x01" * 64, bytes(32))


def test_no_submission_after_the_window(chain: Chain, ledger: CoopLedger) -> None:
    sc = new_scenario(chain, n=4, ledger=ledger, submit_blocks=2, grace_blocks=1)
    rnd = ledger.open_round(sc.task_id).round
    chain.mine(3)
    with _reverts("SubmissionWindowClosed"):
        ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0]), close=False)


def test_a_batch_beyond_max_submissions_is_refused(chain: Chain, ledger: CoopLedger) -> None:
    sc = new_scenario(chain, n=4, ledger=ledger, max_submissions=2)
    rnd = ledger.open_round(sc.task_id).round
    with _reverts("RoundFull"):
        ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0, 1, 2]), close=False)
    ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0, 1]), close=False)
    with _reverts("RoundFull"):
        ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [2]), close=False)


def test_round_calls_out_of_order_are_refused(chain: Chain, ledger: CoopLedger) -> None:
    sc = new_scenario(chain, n=4, ledger=ledger)
    with _reverts("WrongRoundState"):  # round 1 is not open yet
        ledger.close_submissions(sc.task_id, 1)
    rnd = ledger.open_round(sc.task_id).round
    with _reverts("WrongRoundState"):  # still open
        ledger.settle(sc.task_id, rnd)
    ledger.close_submissions(sc.task_id, rnd)
    with _reverts("WrongRoundState"):  # already closed
        ledger.submit_batch(sc.task_id, rnd, sc.submissions(rnd, [0]), close=False)


def test_votes_need_a_batch_and_a_known_submission(chain: Chain, ledger: CoopLedger) -> None:
    sc = new_scenario(chain, n=4, ledger=ledger)
    rnd = _closed_round(sc)
    with _reverts("EmptyBatch"):
        ledger.submit_votes(sc.task_id, rnd, [])
    digest = ledger.submission(sc.task_id, rnd, 0).model_digest
    with _reverts("UnknownSubmission"):
        ledger.submit_votes(sc.task_id, rnd, [sc.vote(rnd, 2, digest, sc.address(3), True)])
    with _reverts("UnknownSubmission"):  # the views too
        ledger.submission(sc.task_id, rnd, 2)
    with _reverts("UnknownSubmission"):
        ledger.assigned_verifiers_on_chain(sc.task_id, rnd, 2)


def test_randomness_that_expired_stops_the_votes(chain: Chain, ledger: CoopLedger) -> None:
    """More than 256 blocks after the randomness block its hash is gone: votes (which fix the
    seed first) are refused until someone refreshes the randomness."""
    sc = new_scenario(chain, n=4, ledger=ledger, vote_blocks=400)
    rnd = _closed_round(sc)
    plan = ledger.assignments(sc.task_id, rnd)
    v = plan.verifiers[0][0]
    vote = sc.vote(rnd, 0, ledger.submission(sc.task_id, rnd, 0).model_digest, v, True)
    chain.mine(plan.rand_block + 257 - chain.block_number())
    with _reverts("RandomnessExpired"):
        ledger.submit_votes(sc.task_id, rnd, [vote])


# ------------------------------------------------------------------ withdrawals
def test_nothing_to_withdraw(chain: Chain, ledger: CoopLedger) -> None:
    with _reverts("NothingToWithdraw"):
        _as(chain, ledger).withdraw()


@cache
def _ether_refuser() -> tuple[list[dict[str, Any]], bytes]:
    """tests/contracts/EtherRefuser.sol compiled by the pinned solc-js (scripts/solc) with
    contracts/compile.cjs's settings. Returns: (ABI, init code)."""
    if not (REPO / "tools/evm/node_modules/solc").exists():
        pytest.skip("solc-js missing: run `bash scripts/setup.sh --node` (installs tools/evm)")
    name = "tests/contracts/EtherRefuser.sol"
    std = {"language": "Solidity", "sources": {name: {"urls": [name]}}, "settings": {
        "evmVersion": "paris", "optimizer": {"enabled": True, "runs": 1000}, "viaIR": True,
        "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}}}
    out = subprocess.run([str(REPO / "scripts/solc"), "--standard-json"], input=json.dumps(std),
                         capture_output=True, text=True, cwd=REPO, check=True, timeout=120)
    res = json.loads(out.stdout)
    errors = [e for e in res.get("errors", []) if e["severity"] == "error"]
    assert not errors, errors
    c = res["contracts"][name]["EtherRefuser"]
    return c["abi"], bytes.fromhex(c["evm"]["bytecode"]["object"])


def test_a_transfer_the_receiver_refuses_reverts_and_keeps_the_balance(
    chain: Chain, ledger: CoopLedger
) -> None:
    """A contract without a receive function registers, the task closes, its deposit is
    released to its balance; its withdrawal reverts (TransferFailed) and the balance stays."""
    abi, init = _ether_refuser()
    sc = new_scenario(chain, n=4, ledger=ledger, invite_only=False)
    out = chain.transact(None, init + encode(["address"], [ledger.address]))
    refuser = to_checksum_address(str(out.logs[0]))
    fns = chain.w3.eth.contract(abi=abi)
    dep = sc.params.min_deposit

    def call(fn: str, args: list[Any], value: int = 0) -> None:
        data = bytes.fromhex(fns.encode_abi(fn, args=args)[2:])
        chain.transact(refuser, data, value, ledger.decode_revert)

    call("register", [sc.task_id], dep)
    ledger.close_task(sc.task_id)
    ledger.release_deposits(sc.task_id, [refuser])
    assert ledger.balance_of(refuser) == dep
    with _reverts("TransferFailed") as caught:
        call("withdraw", [])
    got = caught.value.args_by_name
    assert (to_checksum_address(got["account"]), got["amount"]) == (refuser, dep)
    assert ledger.balance_of(refuser) == dep and chain.balance(refuser) == 0


# ------------------------------------------------------------------ every error has its test
def _solidity_code() -> str:
    text = re.sub(r"/\*.*?\*/", "", SOL.read_text(), flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _errors() -> tuple[list[str], set[str], set[str]]:
    """Returns: the errors declared in the .sol, those raised (``revert X(``), and those only
    used as a skip reason (``X.selector``)."""
    code = _solidity_code()
    declared = re.findall(r"\berror\s+(\w+)\s*\(", code)
    raised = set(re.findall(r"\brevert\s+(\w+)\s*\(", code))
    selectors = set(re.findall(r"\b(\w+)\.selector\b", code)) & set(declared)
    return declared, raised, selectors - raised


def _named_in_tests() -> tuple[set[str], set[str], list[str]]:
    """Returns: the names in the covering tests' ``match=`` / ``_reverts("X")``, the names in
    their assertions on skipped items' ``reason``, and every ``pytest.raises`` without
    ``match=`` (file:line)."""
    reverts: set[str] = set()
    skips: set[str] = set()
    unnamed: list[str] = []
    for path in COVERING:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = ast.unparse(node.func)
                if fn.endswith("_reverts") and node.args and isinstance(node.args[0], ast.Constant):
                    reverts.add(str(node.args[0].value))
                if fn in ("pytest.raises", "raises"):
                    match = [k.value for k in node.keywords if k.arg == "match"]
                    if not match:
                        unnamed.append(f"{path.name}:{node.lineno}")
                    for m in match:
                        if isinstance(m, ast.Constant):
                            reverts.update(re.findall(r"\w+", str(m.value)))
            elif isinstance(node, ast.Assert):
                src = ast.unparse(node.test)
                if "reason" in src and "skipped" in src:
                    skips.update(str(c.value) for c in ast.walk(node.test)
                                 if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return reverts, skips, unnamed


def test_every_raised_error_is_named_by_a_test() -> None:
    declared, raised, _ = _errors()
    assert len(declared) == len(set(declared)) and len(declared) >= 40, declared
    reverts, _, _ = _named_in_tests()
    assert sorted(raised - reverts) == [], "raised by the contract, named by no test's match="


def test_every_skip_reason_is_asserted_by_a_test() -> None:
    _, _, skip_only = _errors()
    assert skip_only == {"AlreadySubmitted", "SignatureReplayed", "DuplicateModel",
                         "AlreadyVoted", "NotRevealed"}, skip_only
    _, skips, _ = _named_in_tests()
    assert sorted(skip_only - skips) == [], "skip reasons no test asserts"


def test_only_the_listed_errors_are_never_used() -> None:
    """No error is declared and never used (``UnknownRound`` was: the contract answers an
    unknown round with WrongRoundState, state 0, so it was deleted)."""
    declared, raised, skip_only = _errors()
    assert set(declared) - raised - skip_only == NEVER_RAISED


def test_the_tests_name_only_declared_errors_and_every_raises_has_a_match() -> None:
    declared, _, _ = _errors()
    reverts, _, unnamed = _named_in_tests()
    custom = {n for n in reverts if n[:1].isupper()}  # match= words that look like error names
    assert sorted(custom - set(declared)) == [], "tests name errors the contract does not declare"
    assert unnamed == [], "pytest.raises without match= in the contract tests"
