"""Against a real IPFS daemon (js-ipfs 0.66.1 on loopback): our CIDs equal the daemon's, content
round-trips, and the client catches lying or failing nodes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from coopflower.storage import (
    CID,
    BlockNotFoundError,
    EmbeddedStore,
    IntegrityError,
    KuboStore,
    NodeError,
    SizeLimitError,
    compute_cid,
)
from coopflower.storage.cid import build_dag
from coopflower.storage.kubo import ADD_PARAMS
from tests.fixtures_ipfs import ipfs_daemon  # noqa: F401

pytestmark = pytest.mark.node

KIB = 1024
MIB = 1024 * KIB
SIZES = {"0B": 0, "1KiB": KIB, "256KiB": 256 * KIB, "256KiB+1": 256 * KIB + 1,
         "1MiB": MIB, "3MiB": 3 * MIB,
         # one full node of 174 leaves, and one byte more: the first tree of two levels
         "174x256KiB": 174 * 256 * KIB, "174x256KiB+1": 174 * 256 * KIB + 1}


def _data(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("label", list(SIZES))
def test_our_cid_equals_the_daemons(ipfs_daemon: str, label: str) -> None:  # noqa: F811
    data = _data(SIZES[label], seed=len(label))
    # the daemon's own answer, through plain HTTP (not through our client)
    params = dict(ADD_PARAMS)
    params.pop("cid-base")  # let js-ipfs print its default base58btc text
    r = httpx.post(f"{ipfs_daemon}/api/v0/add", params=params,
                   files={"file": ("f", data, "application/octet-stream")}, timeout=60)
    r.raise_for_status()
    theirs = CID.from_string(r.json()["Hash"])
    ours = compute_cid(data)
    assert theirs.to_bytes() == ours.to_bytes(), f"{label}: daemon {theirs}, ours {ours}"
    print(f"cid {label}: {ours} ({ours.codec_name}) equal")


def test_round_trip_pin_and_cross_store(ipfs_daemon: str, tmp_path: Path) -> None:  # noqa: F811
    data = _data(MIB + 17, seed=7)
    with KuboStore(ipfs_daemon) as node:
        cid = node.put(data)
        assert cid == compute_cid(data)
        assert node.get(cid) == data
        assert node.get(cid.to_bytes()) == data
        assert node.has(cid)
        node.pin(cid)
        assert node.version()
        # the embedded store gives the same CID for the bytes fetched from the node
        assert EmbeddedStore(tmp_path).put(node.get(str(cid))) == cid


def test_missing_content_fails_fast(ipfs_daemon: str) -> None:  # noqa: F811
    absent = compute_cid(b"never added anywhere " + _data(16, 3))
    with KuboStore(ipfs_daemon, lookup_timeout=0.5) as node:
        t0 = time.monotonic()
        assert not node.has(absent)
        with pytest.raises(BlockNotFoundError, match=str(absent)):
            node.get(absent)
        with pytest.raises(BlockNotFoundError):
            node.pin(absent)
        assert time.monotonic() - t0 < 10
        with pytest.raises(SizeLimitError):
            KuboStore(ipfs_daemon, max_bytes=10).put(b"x" * 11)


def test_tampered_block_in_the_embedded_store_is_named(ipfs_daemon: str,  # noqa: F811
                                                       tmp_path: Path) -> None:
    data = _data(3 * MIB, seed=11)
    with KuboStore(ipfs_daemon) as node:
        cid = node.put(data)
        store = EmbeddedStore(tmp_path)
        assert store.put(node.get(cid)) == cid
    leaf = build_dag(data).blocks[5].cid
    path = store.block_path(leaf)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as info:
        store.get(cid)
    assert str(leaf) in str(info.value) and str(path) in str(info.value)


class _Proxy:
    """A loopback HTTP server in front of the daemon that can fail or lie on purpose."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fail_next = 0  # answer this many requests with a bare 503
        self.tamper_cat = False  # flip a byte of every cat answer
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                proxy.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy.fail_next > 0:
                    proxy.fail_next -= 1
                    self.send_response(503)
                    self.send_header("Content-Length", "11")
                    self.end_headers()
                    self.wfile.write(b"unavailable")
                    return
                headers = {"Content-Type": self.headers.get("Content-Type", "")}
                r = httpx.post(proxy.upstream + self.path, content=body, headers=headers,
                               timeout=60)
                content = r.content
                if proxy.tamper_cat and self.path.startswith("/api/v0/cat") and content:
                    content = bytes([content[0] ^ 1]) + content[1:]
                self.send_response(r.status_code)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def proxy(ipfs_daemon: str) -> Iterator[_Proxy]:  # noqa: F811
    p = _Proxy(ipfs_daemon)
    yield p
    p.close()


def test_a_lying_node_is_caught(proxy: _Proxy) -> None:
    data = _data(300 * KIB, seed=5)
    with KuboStore(proxy.url) as node:
        cid = node.put(data)
        proxy.tamper_cat = True
        with pytest.raises(IntegrityError, match=f"wrong bytes.*expected {cid}"):
            node.get(cid)


def test_retries_with_backoff_then_success(proxy: _Proxy) -> None:
    with KuboStore(proxy.url, retries=3, backoff=0.05) as node:
        proxy.fail_next = 2
        t0 = time.monotonic()
        assert node.version()
        assert time.monotonic() - t0 >= 0.05 + 0.1  # two backoff sleeps, doubled
        assert proxy.requests == 3
        proxy.fail_next = 10
        with pytest.raises(NodeError, match="after 4 attempts.*HTTP 503"):
            node.version()


def test_a_nodes_error_answer_is_final_and_clear(proxy: _Proxy) -> None:
    with KuboStore(proxy.url, retries=3, backoff=0.05) as node:
        before = proxy.requests
        with pytest.raises(NodeError, match="HTTP 4"):
            node._json("cat", {"arg": "not-a-cid"})
        assert proxy.requests == before + 1


def test_unreachable_node_raises_node_error_after_retries() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with KuboStore(f"http://127.0.0.1:{port}", retries=2, backoff=0.01) as node:
        with pytest.raises(NodeError, match="after 3 attempts.*ConnectError"):
            node.version()
