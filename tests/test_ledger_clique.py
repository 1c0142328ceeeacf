"""The life-cycle on a genuine clique Proof-of-Authority chain (ethereumjs 0.9.0, one sealer,
1 s blocks): PoA extra-data middleware, explicit gas, fees and nonces, local signing, receipts
without `status`, and reverts still reported by name."""

from __future__ import annotations

import time

import pytest

from coopflower.ledger import ContractRevertError, Status, connect
from coopflower.ledger.nodes import ChainNode
from tests.fixtures_chain import clique_node, new_scenario  # noqa: F401

pytestmark = [pytest.mark.node, pytest.mark.slow]


def test_lifecycle_on_clique_poa(clique_node: ChainNode) -> None:  # noqa: F811
    t0 = time.monotonic()
    chain = connect(clique_node.url, private_key=clique_node.private_keys[0])
    assert chain.poa and not chain.can_mine
    extra = chain.w3.eth.get_block("latest")["proofOfAuthorityData"]
    assert len(extra) == 32 + 65  # vanity + the sealer's signature: a sealed clique header
    sc = new_scenario(chain, n=4, vote_blocks=30)
    led, t = sc.ledger, sc.task_id
    rnd = led.open_round(t).round
    subs = sc.submissions(rnd, [0, 1, 2, 3])
    led.submit_batch(t, rnd, subs, close=True)
    plan = led.assignments(t, rnd, timeout=60)
    votes = [
        sc.vote(rnd, s, subs[s].model_digest, v, s != 3)
        for s, vs in plan.verifiers.items()
        for v in vs
    ]
    led.submit_votes(t, rnd, votes)
    # (ethereumjs 0.9.0 runs eth_call with block.number = 0, so views needing blockhash only
    # work once the vote batch stored the seed)
    assert led.round(t, rnd).seed == plan.seed
    assert plan.verifiers[0] == led.assigned_verifiers_on_chain(t, rnd, 0)
    result = led.settle(t, rnd)  # every verifier voted: no need to wait for the deadline
    assert [s.status for s in result.submissions] == [Status.ACCEPTED] * 3 + [Status.REJECTED]
    assert result.accepted == 3
    with pytest.raises(ContractRevertError, match="WrongRoundState"):
        led.settle(t, rnd)
    led.record_metamodel(t, rnd, b"\x01\x70" + b"m" * 34, b"\x07" * 32)
    led.log_round(t, rnd, b"\x01\x55" + b"f" * 34, b"\x08" * 32)
    rec = led.round_record(t, rnd)
    assert len(rec.votes) == len(votes) and len(rec.metamodel) == 1
    receipt = chain.w3.eth.get_transaction_receipt(rec.votes[0].tx_hash)  # type: ignore[arg-type]
    print(
        f"clique: started in {clique_node.startup_s:.1f} s, life-cycle in "
        f"{time.monotonic() - t0:.1f} s, {chain.tx_count} transactions, "
        f"receipt has status: {'status' in receipt}"
    )
