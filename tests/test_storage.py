"""The embedded store and open_store (no daemon; see tests/test_storage_ipfs.py for that)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coopflower.storage import (
    BlockNotFoundError,
    ContentStore,
    EmbeddedStore,
    IntegrityError,
    KuboStore,
    SizeLimitError,
    StorageError,
    compute_cid,
    open_store,
)
from coopflower.storage.cid import CHUNK_SIZE, build_dag


def _data(n: int, seed: int = 1) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("size", [0, 1024, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 5])
def test_put_get_round_trip_with_kubo_cids(tmp_path: Path, size: int) -> None:
    store = EmbeddedStore(tmp_path)
    data = _data(size)
    cid = store.put(data)
    assert cid == compute_cid(data)
    assert store.has(cid) and store.has(str(cid)) and store.has(cid.to_bytes())
    assert store.get(cid) == data
    assert store.get(cid.to_bytes()) == data
    assert store.put(data) == cid  # idempotent
    store.pin(cid)
    files = [p for p in (tmp_path / "blocks").rglob("*") if p.is_file()]
    assert len(files) == len(build_dag(data).blocks)
    assert not [p for p in files if p.name.startswith(".tmp-")]


def test_tampered_block_is_detected_and_named(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    data = _data(3 * CHUNK_SIZE)
    cid = store.put(data)
    leaf = build_dag(data).blocks[1].cid
    path = store.block_path(leaf)
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as info:
        store.get(cid)
    message = str(info.value)
    assert str(leaf) in message and str(path) in message
    # putting the same object again repairs the damaged block
    store.put(data)
    assert store.get(cid) == data


def test_missing_block_and_object_are_named(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    data = _data(2 * CHUNK_SIZE + 1)
    cid = store.put(data)
    leaf = build_dag(data).blocks[0].cid
    os.unlink(store.block_path(leaf))
    with pytest.raises(BlockNotFoundError, match=str(leaf)):
        store.get(cid)
    absent = compute_cid(b"never stored")
    assert not store.has(absent)
    with pytest.raises(BlockNotFoundError, match=str(absent)):
        store.get(absent)
    with pytest.raises(BlockNotFoundError):
        store.pin(absent)


def test_size_limits(tmp_path: Path) -> None:
    small = EmbeddedStore(tmp_path, max_bytes=CHUNK_SIZE)
    with pytest.raises(SizeLimitError):
        small.put(b"\0" * (CHUNK_SIZE + 1))
    big = EmbeddedStore(tmp_path, max_bytes=10 * CHUNK_SIZE)
    cid = big.put(_data(2 * CHUNK_SIZE))
    with pytest.raises(SizeLimitError, match="declares"):
        small.get(cid)


def test_bad_inputs_raise_storage_errors(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    with pytest.raises(StorageError):
        store.put("text")  # type: ignore[arg-type]
    with pytest.raises(StorageError):
        store.get("not-a-cid")
    with pytest.raises(StorageError):
        EmbeddedStore(tmp_path, max_bytes=-1)


def test_open_store_selects_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = open_store(str(tmp_path / "a"))
    assert isinstance(a, EmbeddedStore) and isinstance(a, ContentStore)
    assert isinstance(open_store(f"file://{tmp_path}/b"), EmbeddedStore)
    kubo = open_store("http://127.0.0.1:5001")
    assert isinstance(kubo, KuboStore) and isinstance(kubo, ContentStore)
    kubo.close()
    with pytest.raises(StorageError, match="unsupported store"):
        open_store("ftp://example")
    monkeypatch.setenv("COOPFLOWER_STORE", str(tmp_path / "env"))
    store = open_store(None)
    assert isinstance(store, EmbeddedStore) and store.root == tmp_path / "env"
    monkeypatch.delenv("COOPFLOWER_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = open_store()
    assert isinstance(store, EmbeddedStore)
    assert store.root == tmp_path / "cache" / "coopflower" / "store"


def test_daemon_names_the_missing_tool(tmp_path: Path) -> None:
    from coopflower.storage.daemon import find_jsipfs, ipfs_daemon
    from coopflower.storage.errors import DaemonError

    with pytest.raises(DaemonError, match="setup.sh --node"):
        find_jsipfs(tmp_path)
    with pytest.raises(DaemonError, match="js-ipfs is not installed"):
        with ipfs_daemon(tools_dir=tmp_path):
            pass


def test_block_files_are_readable_and_complete(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path)
    cid = store.put(b"public model")
    path = store.block_path(cid)
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_bytes() == b"public model"
