import json

from coopflower.cli import main


def test_demo_round_accepts_trained_and_rejects_lazy(capsys) -> None:
    assert main(["demo", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert sorted(report["decisions"].values()) == ["ACCEPTED", "ACCEPTED", "REJECTED"]
    # every assigned verifier voted, and nobody verified their own model
    contributors = list(report["cids"])
    for vote in report["votes"]:
        assert vote["verifier"] != contributors[vote["submission"]]
    assert len(report["votes"]) == 9
    # the relayer's batches: one transaction each whatever the number of nodes
    assert set(report["gas"]) == {"submit_batch", "submit_votes", "settle"}
    assert sum(report["paid_wei"].values()) > 0
