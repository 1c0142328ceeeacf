"""The ``reveal`` stage: the contributors' seed shares, after the randomness block.

In a task with ``reveal_blocks`` > 0 each signed submission commits to a seed share
(``coopflower.client.duties.seed_share``, known only to its node). Once the randomness block
exists, this stage asks each contributor on chain for its share, checks it against the
commitment its submission carries (``seed_commitment(share, contributor)``) and relays all in
one ``revealSeeds`` transaction. The contract then mixes the shares with the block's hash
(``coopflower.ledger.rules.round_seed``): neither the block's sealer nor this relayer knows the
seed before every share is in. A share that does not open its commitment, and a contributor
that does not answer, are named in the round's report; the contract settles such a
submission UNREVEALED (not verified) and takes ``penalty_no_vote`` from its contributor. A
share this relayer leaves out can be sent by anyone before the window ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flwr.app import Message
from flwr.serverapp import Grid

from coopflower.client import protocol as P
from coopflower.ledger.eip712 import seed_commitment
from coopflower.strategy import wrapped
from coopflower.strategy.progress import transactions

if TYPE_CHECKING:
    from coopflower.strategy.coordinated import CoordinatedStrategy
    from coopflower.strategy.stages import RoundState

__all__ = ["reveal", "parse_share"]


def parse_share(msg: Message) -> tuple[str, bytes]:
    """The (contributor, share) of a reveal reply; ``ValueError`` when malformed."""
    rec = msg.content.config_records.get(P.REVEAL)
    if rec is None:
        raise ValueError("the reply has no 'reveal' record")
    share = rec.get("share")
    if not isinstance(share, bytes) or len(share) != 32:
        raise ValueError("the seed share must be 32 bytes")
    return P.get_str(rec, "contributor"), bytes(share)


def reveal(s: CoordinatedStrategy, st: RoundState, grid: Grid, timeout: float) -> None:
    """Collect and relay the round's seed shares (nothing to do in a task without reveals)."""
    from coopflower.strategy.stages import exchange

    task_id, rnd = int(s.task_id or 0), st.report.chain_round
    info = s.ledger.round(task_id, rnd)
    if not info.reveals or not info.n_submissions:
        return
    with s.phases.phase(st.rnd, "reveal") as rec:
        # never before the randomness block: a share known early helps its sealer choose
        s.ledger.chain.wait_for_block(info.rand_block + 1, timeout=max(timeout, 60.0))
        # one read of the Submitted events for the commitments and their contributors
        committed = s.ledger.round_commitments(task_id, rnd)
        commits = [committed[sid][1] for sid in range(len(committed))]
        by_contributor = {who.lower(): sid for sid, (who, _) in committed.items()}
        node_of = {a.lower(): nid for nid, a in s.addresses.items()}
        cfg = {**s.base_config(), "server-round": st.rnd, "round": rnd}
        msgs = [wrapped.reveal_message(node_of[who], cfg)
                for who in sorted(by_contributor) if who in node_of]
        shares: dict[int, bytes] = {}
        for msg in exchange(s, st, "reveal", grid, msgs, timeout):
            nid = msg.metadata.src_node_id
            try:
                who, share = parse_share(msg)
                sid = by_contributor[who.lower()]
                if seed_commitment(share, who) != commits[sid]:
                    raise ValueError("it does not open the commitment its submission signed")
            except (ValueError, KeyError) as exc:
                st.fail("reveal", nid, f"seed share refused: {exc}")
                continue
            shares[sid] = share
        st.unrevealed = set(range(len(commits))) - set(shares)
        tx0 = s.ledger.chain.tx_count
        if shares:
            st.report.gas += s.ledger.reveal_seeds(task_id, rnd, shares, commits).gas_used
        rec.detail = (f"{len(shares)} of {len(commits)} seed shares in "
                      f"{transactions(s.ledger.chain.tx_count - tx0)}")
