"""The CID builder, pure: encodings, the tree's shape, block lists, verification.

The comparison with a real IPFS daemon is in tests/test_storage_ipfs.py.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coopflower.storage.cid import (
    CHUNK_SIZE,
    CID,
    DAG_PB,
    MAX_LINKS,
    RAW,
    Link,
    assemble,
    build_dag,
    compute_cid,
    decode_pbnode,
    decode_unixfs,
    encode_pbnode,
    verify,
    verify_block,
)
from coopflower.storage.errors import CIDError, IntegrityError, SizeLimitError

# The CID of the empty input, as printed by every IPFS implementation for raw leaves / CIDv1,
# in base32 and in js-ipfs's default base58btc text.
EMPTY_B32 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
EMPTY_B58 = "zb2rhmy65F3REf8SZp7De11gxtECBGgUKaLdiDj7MCGCHxbDW"


def test_small_data_is_one_raw_leaf_hashing_the_bytes() -> None:
    for data in (b"", b"x", b"\0" * CHUNK_SIZE):
        cid = compute_cid(data)
        assert cid.version == 1 and cid.codec == RAW
        assert cid.digest == hashlib.sha256(data).digest()
        raw = cid.to_bytes()
        assert raw[:4] == bytes([1, RAW, 0x12, 32]) and len(raw) == 36
    assert str(compute_cid(b"")) == EMPTY_B32
    assert CID.from_string(EMPTY_B58) == CID.from_string(EMPTY_B32)


def test_text_and_bytes_round_trip_and_cidv0() -> None:
    cid = compute_cid(b"\1" * (CHUNK_SIZE + 1))
    assert cid.codec == DAG_PB
    assert CID.from_string(str(cid)) == cid
    assert CID.from_bytes(cid.to_bytes()) == cid
    assert CID.parse(cid.to_bytes()) == CID.parse(str(cid)) == CID.parse(cid)
    assert CID.from_string("/ipfs/" + str(cid)) == cid
    v0 = CID(0, DAG_PB, cid.digest)
    text = v0.encode()
    assert text.startswith("Qm") and len(text) == 46
    assert CID.from_string(text) == v0 and v0.to_v1() == cid


@pytest.mark.parametrize(
    "bad",
    ["", "x123", "bnotbase32!", "Qm" + "0" * 44, "bafkqaaa", "z" + "1" * 10, "b" + "a" * 8],
)
def test_malformed_cid_text_raises_cid_error(bad: str) -> None:
    with pytest.raises(CIDError):
        CID.from_string(bad)


def test_malformed_cid_bytes_raise_cid_error() -> None:
    good = compute_cid(b"abc").to_bytes()
    for bad in (b"", good[:-1], good + b"\0", bytes([2]) + good[1:], bytes([1, 0x71]) + good[2:],
                bytes([1, RAW, 0x13]) + good[3:], b"\xff" * 12):
        with pytest.raises(CIDError):
            CID.from_bytes(bad)
    with pytest.raises(CIDError):
        CID(1, RAW, b"short")


def _depths(dag_root: CID, blocks: dict[CID, bytes]) -> list[int]:
    """Depth of every leaf, left to right."""
    out: list[int] = []
    stack = [(dag_root, 0)]
    while stack:
        cid, depth = stack.pop()
        if cid.codec == RAW:
            out.append(depth)
            continue
        node = decode_pbnode(blocks[cid])
        stack.extend(reversed([(link.cid, depth + 1) for link in node.links]))
    return out


def test_balanced_tree_shape_with_small_parameters() -> None:
    # chunk 4 bytes, 3 links a node: 10 chunks -> 4 level-1 nodes -> 2 level-2 -> root
    data = bytes(range(37))
    dag = build_dag(data, chunk_size=4, max_links=3)
    blocks = {b.cid: b.data for b in dag.blocks}
    assert dag.blocks[-1].cid == dag.root and dag.size == 37
    assert _depths(dag.root, blocks) == [3] * 10
    root = decode_pbnode(blocks[dag.root])
    assert len(root.links) == 2
    fs = decode_unixfs(root.data or b"")
    assert fs.filesize == 37 and fs.blocksizes == (36, 1) and fs.data == b""
    # Tsize of a link = the child's block plus everything below it
    total = sum(len(b) for b in blocks.values())
    assert sum(link.tsize for link in root.links) + len(blocks[dag.root]) == total
    assert assemble(dag.root, blocks.__getitem__) == data


def test_kubo_layout_at_the_boundaries() -> None:
    """174 leaves fit one node; the 175th leaf adds a level (leaves 1 byte, same layout)."""
    flat = build_dag(b"a" * MAX_LINKS, chunk_size=1)
    assert len(decode_pbnode(flat.blocks[-1].data).links) == MAX_LINKS
    deeper = build_dag(b"a" * (MAX_LINKS + 1), chunk_size=1)
    top = decode_pbnode(deeper.blocks[-1].data)
    assert len(top.links) == 2
    second = {b.cid: b.data for b in deeper.blocks}[top.links[1].cid]
    assert len(decode_pbnode(second).links) == 1  # a one-leaf node, not collapsed


def test_pbnode_encoding_is_canonical_links_first() -> None:
    child = compute_cid(b"leaf")
    enc = encode_pbnode([Link(child, 4)], b"\x08\x02")
    assert enc[0] == 0x12  # field 2 (Links) precedes field 1 (Data)
    assert enc.endswith(b"\x0a\x02\x08\x02")
    node = decode_pbnode(enc)
    assert node.links == (Link(child, 4),) and node.data == b"\x08\x02"
    with pytest.raises(CIDError):
        decode_pbnode(enc[:-1])
    with pytest.raises(CIDError):
        decode_pbnode(b"\x0d\0\0\0\0")  # wire type 5


def test_verify_names_both_cids_on_mismatch() -> None:
    data = b"model" * 100_000
    cid = compute_cid(data)
    verify(cid, data)
    verify(str(cid), data)
    tampered = bytearray(data)
    tampered[300_000] ^= 1
    with pytest.raises(IntegrityError, match=str(cid)) as info:
        verify(cid, bytes(tampered))
    assert str(compute_cid(bytes(tampered))) in str(info.value)
    with pytest.raises(IntegrityError, match="block"):
        verify_block(compute_cid(b"a"), b"b", where="/some/file")


def test_assemble_detects_tampered_blocks_and_size_limits() -> None:
    data = bytes(range(256)) * 10
    dag = build_dag(data, chunk_size=100, max_links=4)
    blocks = {b.cid: b.data for b in dag.blocks}
    leaf = dag.blocks[3].cid
    bad = {**blocks, leaf: b"x" + blocks[leaf][1:]}
    with pytest.raises(IntegrityError, match=str(leaf)):
        assemble(dag.root, bad.__getitem__)
    with pytest.raises(SizeLimitError):
        assemble(dag.root, blocks.__getitem__, max_size=len(data) - 1)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=2000), chunk=st.integers(1, 64), links=st.integers(2, 6))
def test_blocks_reassemble_and_verify(data: bytes, chunk: int, links: int) -> None:
    dag = build_dag(data, chunk_size=chunk, max_links=links)
    blocks = {}
    for b in dag.blocks:
        verify_block(b.cid, b.data)
        blocks[b.cid] = b.data
    assert dag.root == compute_cid(data, chunk_size=chunk, max_links=links)
    assert assemble(dag.root, blocks.__getitem__) == data
    assert len(set(_depths(dag.root, blocks))) == 1  # every leaf at the same depth
