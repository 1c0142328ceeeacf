"""The node side Case III needs: a node's digits from a partition file, the local training
recipe from the train config, contributors that continue from their own model across rounds
under fusion (the paper app's ClientApp with coopflower's fusion mod), and ``make_client_app``
filling node config keys in a real Flower simulation."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from coopflower.app.client_app import app, fill_node_config, make_client_app
from coopflower.app.data import (
    NodeDataError,
    NodeSplit,
    partition_from_file,
    write_partition_file,
)
from coopflower.app.node import NodeConfigError, NodeSettings, local_data, train_recipe
from coopflower.client import protocol as P
from coopflower.client import stages as S
from coopflower.data.mnist import load_mnist

pytestmark = pytest.mark.usefixtures("run_identity")  # tests/conftest.py

N = int(load_mnist().labels.shape[0])  # the digits the nodes' loader holds


def _parts(sizes: list[tuple[int, int]], seed: int = 0) -> list[NodeSplit]:
    """Disjoint random parts of MNIST: (train, verify) sizes per node."""
    perm = np.random.default_rng(seed).permutation(N)
    out, at = [], 0
    for n_train, n_verify in sizes:
        out.append(NodeSplit(perm[at:at + n_train], perm[at + n_train:at + n_train + n_verify]))
        at += n_train + n_verify
    return out


# ------------------------------------------------------------------ the partition file
def test_partition_file_round_trips(tmp_path: Path) -> None:
    parts = _parts([(50, 20), (30, 0), (40, 10)])
    path = tmp_path / "parts"  # no .npz suffix: written at exactly this path
    write_partition_file(path, parts)
    assert path.exists() and not (tmp_path / "parts.npz").exists()
    for pid, part in enumerate(parts):
        got = partition_from_file(path, pid, N)
        assert got.train.dtype == np.int64 and got.verify.dtype == np.int64
        assert np.array_equal(got.train, part.train)
        assert np.array_equal(got.verify, part.verify)
    assert partition_from_file(path, 1, N).verify.size == 0  # a pure contributor
    with pytest.raises(NodeDataError, match=r"lacks \['train-3', 'verify-3'\]"):
        partition_from_file(path, 3, N)


def _npz(path: Path, **arrays: Any) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize(("arrays", "problem"), [
    ({"train-0": np.arange(5)}, r"lacks \['verify-0'\]"),
    ({"train-0": np.arange(5.0), "verify-0": np.arange(5, 8)}, "train must hold integers"),
    ({"train-0": np.arange(5), "verify-0": np.array([N])}, f"verify index {N} out of range"),
    ({"train-0": np.array([-1, 2]), "verify-0": np.arange(5, 8)}, "negative index"),
    ({"train-0": np.arange(5), "verify-0": np.arange(3, 8)}, "overlap in 2 indices"),
    ({"train-0": np.array([], np.int64), "verify-0": np.arange(5, 8)}, "train is empty"),
    ({"train-0": np.arange(6).reshape(2, 3), "verify-0": np.arange(7, 9)}, "1-D"),
    ({"train-0": np.array([1, 1, 2]), "verify-0": np.arange(7, 9)}, "repeats"),
    ({"train-0": np.array([True, False]), "verify-0": np.arange(7, 9)}, "integers"),
])
def test_bad_partition_files_are_named(tmp_path: Path, arrays: dict[str, Any],
                                       problem: str) -> None:
    path = _npz(tmp_path / "p.npz", **arrays)
    with pytest.raises(NodeDataError, match=problem) as info:
        partition_from_file(path, 0, N)
    assert str(path) in str(info.value)


class _Boom:
    """Unpickling this would run code: a partition file must never be unpickled."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch /tmp/coopflower-unpickled",))


def test_pickles_and_other_files_are_rejected_not_loaded(tmp_path: Path) -> None:
    marker = Path("/tmp/coopflower-unpickled")
    marker.unlink(missing_ok=True)
    obj = _npz(tmp_path / "obj.npz", **{"train-0": np.array([_Boom()], dtype=object),
                                        "verify-0": np.arange(3)})
    raw = tmp_path / "raw.npz"
    raw.write_bytes(pickle.dumps({"train-0": _Boom()}))
    npy = tmp_path / "one.npy"
    np.save(npy, np.arange(4))
    text = tmp_path / "text.npz"
    text.write_text("train-0 = 1, 2, 3\n")
    cases = [(obj, "unreadable arrays"), (raw, "not an npz"), (npy, "not an npz"),
             (text, "not an npz"), (tmp_path / "missing.npz", "no such file")]
    for path, problem in cases:
        with pytest.raises(NodeDataError, match=problem) as info:
            partition_from_file(path, 0, N)
        assert str(path) in str(info.value)
    assert not marker.exists()


def test_writer_rejects_bad_parts_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "parts.npz"
    bad = [NodeSplit(np.arange(5), np.arange(10, 12)), NodeSplit(np.arange(5), np.arange(4, 6))]
    with pytest.raises(NodeDataError, match="partition 1: train and verify overlap"):
        write_partition_file(path, bad)
    with pytest.raises(NodeDataError, match="at least one"):
        write_partition_file(path, [])
    assert not path.exists() and not list(tmp_path.iterdir())


def test_node_takes_exactly_the_file_digits(tmp_path: Path) -> None:
    parts = _parts([(40, 15), (25, 0)], seed=3)
    path = tmp_path / "parts.npz"
    write_partition_file(path, parts)
    data = load_mnist()
    for pid, part in enumerate(parts):
        # partition/alpha/data-seed are ignored for the split when a file is given
        settings = NodeSettings.from_node_config({
            "partition-id": pid, "num-partitions": 9, "partition-file": str(path),
            "partition": "dirichlet", "alpha": 0.1, "data-seed": 7})
        assert settings.partition_file == str(path)
        local = local_data(settings)
        assert np.array_equal(local.train_x, data.images[part.train])
        assert np.array_equal(local.train_y, data.labels[part.train])
        assert np.array_equal(local.verify_y, data.labels[part.verify])
    # a rewritten file at the same path is read again, not served from the cache
    write_partition_file(path, [parts[1], parts[0]])
    os.utime(path, ns=(1, 1))
    again = local_data(NodeSettings.from_node_config({"partition-file": str(path)}))
    assert np.array_equal(again.train_y, data.labels[parts[1].train])
    with pytest.raises(NodeDataError, match="no such file"):
        local_data(NodeSettings.from_node_config({"partition-file": str(tmp_path / "x.npz")}))


# ------------------------------------------------------------------ the training recipe
@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parts") / "parts.npz"
    write_partition_file(path, _parts([(128, 64), (96, 0)], seed=5))
    return path


def _ctx(tmp: Path, small_file: Path, pid: int = 0) -> Context:
    cfg: dict[str, str | int | float | bool] = {
        "partition-id": pid, "num-partitions": 2, "key-file": str(tmp / f"k{pid}.json"),
        "partition-file": str(small_file), "model": "table4"}
    return Context(run_id=1, node_id=pid + 1, node_config=cfg, state=RecordDict(),
                   run_config={})


def _train_weights(tmp: Path, small_file: Path, **recipe: Any) -> dict[str, np.ndarray]:
    cfg = ConfigRecord({"server-round": 1, "epochs": 1, "lr": 0.05, "batch-size": 32,
                        "seed": 4} | recipe)
    msg = Message(RecordDict({P.ARRAYS: ArrayRecord(), P.CONFIG: cfg}), 1, "train")
    reply = app(msg, _ctx(tmp, small_file))  # a plain train message: through to the app
    assert reply.content.metric_records[P.METRICS]["num-examples"] == 128
    return {k: a.numpy() for k, a in reply.content.array_records[P.ARRAYS].items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_recipe_keys_change_the_trained_weights(tmp_path: Path, small_file: Path) -> None:
    base = _train_weights(tmp_path, small_file)
    assert _same(base, _train_weights(tmp_path, small_file))  # deterministic by seed
    assert _same(base, _train_weights(tmp_path, small_file, momentum=0.9, **{
        "lr-schedule": "constant", "augment-shift": 0, "augment-rotate": 0.0}))  # the defaults
    for recipe in ({"augment-shift": 2}, {"augment-rotate": 10.0}, {"augment-scale": 0.1},
                   {"momentum": 0.5}):
        assert not _same(base, _train_weights(tmp_path, small_file, **recipe)), recipe
    # the cosine schedule anneals per epoch: it shows from the second epoch on
    constant = _train_weights(tmp_path, small_file, epochs=2)
    assert not _same(constant, _train_weights(tmp_path, small_file, epochs=2,
                                              **{"lr-schedule": "cosine"}))


@pytest.mark.parametrize(("recipe", "problem"), [
    ({"lr-schedule": "linear"}, "lr-schedule"),
    ({"lr-schedule": 1}, "lr-schedule"),
    ({"momentum": 1.5}, "momentum"),
    ({"momentum": -0.1}, "momentum"),
    ({"momentum": "high"}, "momentum"),
    ({"augment-rotate": 90.0}, "augment"),
    ({"augment-shift": -1}, "augment"),
    ({"augment-scale": 0.7}, "augment"),
    ({"augment-shift": True}, "augment-shift"),
])
def test_bad_recipe_values_raise_node_config_error(tmp_path: Path, small_file: Path,
                                                   recipe: dict[str, Any], problem: str) -> None:
    with pytest.raises(NodeConfigError, match=problem):
        train_recipe(recipe)
    cfg = ConfigRecord({"server-round": 1, "epochs": 1, **recipe})
    with pytest.raises(NodeConfigError, match=problem):  # before any data is loaded or trained
        app(Message(RecordDict({P.CONFIG: cfg}), 1, "train"), _ctx(tmp_path, small_file))


def test_recipe_defaults_are_todays_behaviour() -> None:
    r = train_recipe({})
    assert (r.momentum, r.lr_schedule, r.augment) == (0.9, "constant", None)
    r = train_recipe({"augment-shift": 2, "augment-scale": 0.1})
    assert r.augment is not None and (r.augment.shift, r.augment.rotate, r.augment.scale) == (
        2.0, 0.0, 0.1)


# ------------------------------------------------------------------ continuity, pure contributor
def test_contributor_keeps_and_continues_its_own_model(tmp_path: Path,
                                                        small_file: Path) -> None:
    """Under fusion the train messages carry no arrays: the fusion mod hands the app the
    node's own model, kept in its context state from the round before."""
    from coopflower.blob import unpack_arrays
    from coopflower.client.fusion_mod import OWN_MODEL
    from coopflower.ledger import CoopLedger, connect
    from coopflower.storage import open_store

    ledger = CoopLedger.deploy(connect())
    store = tmp_path / "store"
    ctx = _ctx(tmp_path, small_file)

    def train(rnd: int) -> Message:
        coop = ConfigRecord({"server-round": rnd, "round": rnd, "task-id": 1, "fusion": True,
                             "chain-id": ledger.chain.chain_id, "store": str(store),
                             "contract": ledger.address, S.STAGE: S.TRAIN})
        content = RecordDict({P.ARRAYS: ArrayRecord(), S.COOP: coop,
                              P.CONFIG: ConfigRecord({"epochs": 1, "seed": 0})})
        return app(Message(content, 1, "train"), ctx)

    def kept() -> dict[str, np.ndarray]:
        return {k: a.numpy() for k, a in ctx.state.array_records[OWN_MODEL].items()}

    first = train(1)  # no model of its own yet: the factory's fresh table4
    cid = bytes(first.content.config_records[P.SUBMISSION]["cid"])  # type: ignore[arg-type]
    uploaded, meta = unpack_arrays(open_store(store).get(cid))
    assert meta["model"] == "table4" and _same(kept(), dict(uploaded))
    loss1 = float(first.content.metric_records[P.METRICS]["train-loss"])  # type: ignore[arg-type]
    round1 = kept()
    second = train(2)  # continues from round 1's model: its loss starts far lower
    assert not _same(round1, kept())
    assert float(second.content.metric_records[P.METRICS]["train-loss"]) < loss1  # type: ignore[arg-type]


def test_pure_contributor_refuses_to_evaluate(tmp_path: Path, small_file: Path) -> None:
    from coopflower.models import build_model

    ctx = _ctx(tmp_path, small_file, pid=1)  # verify-1 is empty
    arrays = ArrayRecord(build_model("table4").state_dict())
    with pytest.raises(NodeConfigError, match="cannot evaluate: its partition file .* no "
                                              "verification digits"):
        app(Message(RecordDict({P.ARRAYS: arrays, P.CONFIG: ConfigRecord()}), 2, "evaluate"),
            ctx)


# ------------------------------------------------------------------ make_client_app
def test_fill_node_config_lets_the_node_own_keys_win() -> None:
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": 2, "model": "table1_c1"},
                  state=RecordDict(), run_config={})
    seen: dict[str, Any] = {}

    def handler(msg: Message, context: Context) -> Message:
        seen.update(context.node_config)
        return msg

    msg = Message(RecordDict(), 1, "train")
    assert fill_node_config({"model": "table4", "partition-file": "p.npz"}, msg, ctx,
                            handler) is msg
    assert seen == {"partition-id": 2, "model": "table1_c1", "partition-file": "p.npz"}
    with pytest.raises(NodeConfigError, match="not str/int/float/bool"):
        make_client_app({"partition-file": None})  # type: ignore[dict-item]


@pytest.mark.parametrize("min_bps", [1000, 10000])
def test_simulated_contributors_continue_from_their_own_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_bps: int
) -> None:
    """3 simulated nodes (Ray), CoordinatedStrategy with gradual fusion (Strategy II) on the
    embedded chain and store, 2 rounds: in round 2 every contributor continues from its own
    round-1 model, and each trains on exactly its partition file's digits. With a criterion
    of 100% (10000 bps) no model is accepted, so no MetaModel exists: the contributors still
    continue their own models instead of restarting from the initial arrays."""
    monkeypatch.setenv("COOPFLOWER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp/coopflower-ray")
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from coopflower.app.data import test_indices
    from coopflower.app.server_app import initial_arrays
    from coopflower.fusion import FusionConfig, make_fusion_aggregate
    from coopflower.models import PAPER_HEAD, model_factories
    from coopflower.strategy.coordinated import CoordinatedStrategy, TaskConfig

    data = load_mnist()
    held_out = test_indices(data.labels)  # the initiator's digits, outside the nodes' parts
    nodes = np.setdiff1d(np.arange(N), held_out)
    perm = np.random.default_rng(11).permutation(nodes)
    sizes = [(300, 120), (340, 120), (380, 120)]  # distinct train sizes name each node
    parts, at = [], 0
    for n_train, n_verify in sizes:
        parts.append(NodeSplit(perm[at:at + n_train], perm[at + n_train:at + n_train + n_verify]))
        at += n_train + n_verify
    pfile = tmp_path / "parts.npz"
    write_partition_file(pfile, parts)
    init = held_out[:600]
    aggregate = make_fusion_aggregate(
        data.images[init], data.labels[init], "II",
        FusionConfig(epochs_stage1=1, epochs_stage2=1, augment_copies=0),
        factories=model_factories(), heads=PAPER_HEAD)

    calls: list[tuple[str, int, list[Message]]] = []
    from coopflower.strategy import evaluation, publish, stages

    real = stages.send_and_receive

    def recording(grid: Any, messages: Any, **kwargs: Any) -> list[Message]:
        msgs = list(messages)
        replies = real(grid, msgs, **kwargs)
        coop = msgs[0].content.config_records.get(S.COOP, ConfigRecord()) if msgs else {}
        calls.append((str(coop.get(S.STAGE, "")), P.get_int(coop, "server-round", 0), replies))
        return replies

    for module in (evaluation, publish, stages):  # registration, train and verify
        monkeypatch.setattr(module, "send_and_receive", recording)
    store = str(tmp_path / "store")
    out: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = CoordinatedStrategy(
            FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=3,
                   min_train_nodes=3),
            task=TaskConfig(k=2, quorum=1, metric="accuracy", min_metric=min_bps / 10000),
            store=store, aggregate_fn=aggregate)
        out["result"] = strategy.start(
            grid=grid, initial_arrays=initial_arrays("table4"), num_rounds=2,
            train_config=ConfigRecord({"epochs": 1, "lr": 0.05, "batch-size": 32, "seed": 0,
                                       "model": "table4", "store": store}))
        out["strategy"] = strategy

    app = make_client_app({"partition-file": str(pfile), "model": "table4"})
    run_simulation(server, app, num_supernodes=3, backend_config={
        "client_resources": {"num_cpus": 1},
        "init_args": {"num_cpus": min(2, os.cpu_count() or 1)},
    })
    assert "strategy" in out, "the ServerApp did not finish"
    first, second = out["strategy"].reports
    assert not first.failures and not second.failures
    if min_bps == 1000:  # fused: round 2's nodes got empty arrays
        assert first.meta_cid and second.meta_cid
    else:  # nothing accepted, nothing fused: the initial arrays stay home in round 2 too
        assert first.accepted == second.accepted == 0
        assert first.meta_cid is None and second.meta_cid is None

    pid_of = {}
    for kind, _, replies in calls:
        if kind == S.REGISTER:
            for m in replies:
                r = m.content.config_records[P.REGISTRATION]
                pid_of[r["address"]] = P.get_int(r, "partition-id")
    assert sorted(pid_of.values()) == [0, 1, 2]
    train = {rnd: replies for kind, rnd, replies in calls if kind == "train"}
    assert sorted(train) == [1, 2] and all(len(r) == 3 for r in train.values())
    loss: dict[tuple[int, int], float] = {}
    for rnd, replies in train.items():
        for m in replies:
            pid = pid_of[m.content.config_records[P.SUBMISSION]["contributor"]]
            metrics = m.content.metric_records[P.METRICS]
            assert metrics["num-examples"] == sizes[pid][0]  # exactly the file's digits
            loss[rnd, pid] = float(metrics["train-loss"])  # type: ignore[arg-type]
    for pid in range(3):  # continuing from a trained model: round 2 starts far lower
        assert loss[2, pid] < loss[1, pid], loss
