"""Pure pieces of the client: node keys, node data splits, the message protocol, settings."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from coopflower.app.data import NodeDataError, node_split, parse_labels
from coopflower.app.data import test_indices as held_out_indices
from coopflower.app.node import NodeConfigError, NodeSettings
from coopflower.client import protocol as P
from coopflower.client.keys import KeyFileError, load_or_create_key


def test_key_file_created_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "node.json"
    a = load_or_create_key(path)
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    b = load_or_create_key(path)
    assert a == b and a.address.startswith("0x") and len(a.private_key) == 32
    assert a.private_key.hex() not in repr(a)
    other = load_or_create_key(tmp_path / "other.json")
    assert other.address != a.address


def test_bad_key_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(KeyFileError, match="bad.json"):
        load_or_create_key(bad)
    bad.write_text(json.dumps({"private_key": "00" * 31}))
    with pytest.raises(KeyFileError, match="32 bytes"):
        load_or_create_key(bad)
    good = load_or_create_key(tmp_path / "good.json")
    doc = json.loads((tmp_path / "good.json").read_text())
    doc["address"] = "0x" + "11" * 20
    bad.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="does not match"):
        load_or_create_key(bad)
    assert good.address != doc["address"]


def test_node_splits_are_disjoint_and_deterministic() -> None:
    labels = np.repeat(np.arange(10), 100)
    test = set(held_out_indices(labels).tolist())
    seen: set[int] = set()
    for pid in range(5):
        s = node_split(labels, pid, 5)
        parts = set(s.train.tolist()), set(s.verify.tolist())
        assert not (parts[0] & parts[1]) and not ((parts[0] | parts[1]) & test)
        assert not ((parts[0] | parts[1]) & seen)
        seen |= parts[0] | parts[1]
        again = node_split(labels, pid, 5)
        np.testing.assert_array_equal(s.train, again.train)
    assert len(seen) + len(test) == labels.size


def test_label_subset_and_dirichlet_schemes() -> None:
    labels = np.repeat(np.arange(10), 100)
    s = node_split(labels, 1, 4, scheme="labels", label_subset=parse_labels("0,1,2"))
    assert set(labels[np.concatenate([s.train, s.verify])].tolist()) == {0, 1, 2}
    d0 = node_split(labels, 0, 4, scheme="dirichlet", alpha=0.1)
    d1 = node_split(labels, 1, 4, scheme="dirichlet", alpha=0.1)
    assert not set(d0.train.tolist()) & set(d1.train.tolist())
    with pytest.raises(NodeDataError, match="label subset"):
        node_split(labels, 0, 4, scheme="labels")
    with pytest.raises(NodeDataError, match="unknown partition"):
        node_split(labels, 0, 4, scheme="bogus")
    with pytest.raises(NodeDataError):
        node_split(labels, 4, 4)
    with pytest.raises(NodeDataError):
        parse_labels("a,b")


def test_protocol_getters_reject_wrong_types() -> None:
    cfg = {"n": 3, "f": 0.5, "s": "x", "ids": [1, 2], "flag": True, "bs": [b"a"]}
    assert P.get_int(cfg, "n") == 3 and P.get_float(cfg, "n") == 3.0
    assert P.get_str(cfg, "s") == "x" and P.get_int(cfg, "missing", 7) == 7
    assert P.get_list(cfg, "bs", bytes) == [b"a"]
    for bad in (lambda: P.get_int(cfg, "flag"), lambda: P.get_int(cfg, "f"),
                lambda: P.get_str(cfg, "n"), lambda: P.get_list(cfg, "ids", bytes),
                lambda: P.get_int(cfg, "missing")):
        with pytest.raises(P.ProtocolError):
            bad()


def test_node_settings_from_node_config(tmp_path: Path) -> None:
    """The paper app's node config (the mod's own keys, such as ``key-file``, are not its)."""
    s = NodeSettings.from_node_config({
        "partition-id": 2, "num-partitions": 4, "key-file": str(tmp_path / "k.json"),
        "model": "table1_c2", "partition": "labels", "labels": "0,6,7,8,9",
    })
    assert (s.partition_id, s.num_partitions, s.model) == (2, 4, "table1_c2")
    assert s.labels == frozenset({0, 6, 7, 8, 9})
    with pytest.raises(NodeConfigError, match="bad node config"):
        NodeSettings.from_node_config({"partition-id": "x"})


def test_node_key_is_read_again_when_its_file_is_replaced(tmp_path: Path) -> None:
    """The mod keeps the key it loaded per key file, but a replaced or rewritten key file is
    read again (a kept key never outlives its file's content)."""
    from flwr.app import Context, RecordDict

    from coopflower.client.keys import load_or_create_key
    from coopflower.client.mod import node_key

    path = tmp_path / "node.json"
    ctx = Context(run_id=1, node_id=1, node_config={"key-file": str(path)}, state=RecordDict(),
                  run_config={})
    first = node_key(ctx)
    assert node_key(ctx) == first == load_or_create_key(path)
    path.unlink()
    second = load_or_create_key(path)  # another key in the same place
    assert second != first and node_key(ctx) == second
