"""``coop_mod``: the coordinated round as a Flower client mod, around the app's own handlers.

An existing ClientApp adopts coopflower with one argument::

    from coopflower.client import coop_mod

    app = ClientApp(mods=[coop_mod])   # the app's own @app.train and @app.evaluate stay

The mod answers the coordination stages (``coopflower.client.stages``) and lets everything else
through. It calls the app's handlers only where the round needs them:

- ``register`` (an evaluate message): the node's signed consent to be registered; the app is
  not called.
- ``train``: the app's train, on exactly the message a plain Flower strategy would send (the
  ``coop`` record removed). Its returned arrays are checked against the global model it was sent
  (names, shapes, finite values), packed into a safetensors blob, stored by CID and signed; the
  reply carries the submission and the app's own metrics, no arrays.
- ``verify`` (an evaluate message): for each assigned model, fetch it by CID, check it (content
  hash, blob structure, the global model's names and shapes, finite values), hand it to the
  app's evaluate as an ordinary evaluate message, read the task's metric from the reply, and
  sign the vote. A model that fails a check is a "no" with its reason; an app whose evaluate
  fails or does not return the metric makes the whole stage fail with a named error (that is the
  verifier's fault, not the contributor's).

Node config keys the mod reads: ``key-file`` (the node's Ethereum key, created on first start;
default ``$COOPFLOWER_HOME/keys/node-<partition-id or node id>.json``, home ``~/.coopflower``)
and ``store`` (overrides the server's storage spec, e.g. the node's own IPFS RPC URL).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from coopflower.client import protocol as P
from coopflower.client import stages as S
from coopflower.client.copies import Flat, Reference, copy_check, digest_check, flatten
from coopflower.client.keys import NodeKey, load_or_create_key

__all__ = ["coop_mod", "CoopModError", "AppReplyError", "COOP_METRICS"]

# the mod's own figures travel in their own record, apart from the app's metrics
COOP_METRICS = "coop-metrics"


class CoopModError(P.ProtocolError):
    """A coordination stage the mod cannot carry out (bad message, unsupported option)."""


class AppReplyError(CoopModError):
    """The app's own handler failed or replied with something the round cannot use."""


def coop_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower mod (``ClientApp(mods=[coop_mod])``): answer coopflower's stages, pass the rest.

    Args:
        msg: the incoming message. context: the node's context. call_next: the app's handler
            (behind any later mods).

    Returns:
        The reply.
    """
    stage = S.stage_of(msg.content.config_records)
    if stage is None:
        return call_next(msg, context)
    if stage == S.REGISTER:
        return _register(msg, context)
    if stage == S.REVEAL:
        return _reveal(msg, context)
    if stage == S.TRAIN:
        if _coop(msg).get("fusion"):
            raise CoopModError("this task fuses the contributors' own models (of any "
                               "architectures): the node needs the fusion mod with the app's "
                               "model factories (coopflower.client.fusion_mod)")
        return train_stage(msg, context, call_next)
    return verify_stage(msg, context, call_next)


# ---------------------------------------------------------------- helpers
def key_path(context: Context) -> Path:
    """The node's key file: its ``key-file`` node config, else one per partition in the home."""
    cfg = context.node_config
    ident = cfg.get("partition-id", context.node_id)
    home = Path(os.environ.get("COOPFLOWER_HOME", "~/.coopflower"))
    return Path(str(cfg.get("key-file") or home / "keys" / f"node-{ident}.json")).expanduser()


# the keys this process loaded, by key file and the file's (inode, size, mtime): a node's
# handlers run many messages a round in one process, each reading and checking the key file
# and deriving its address (1-2 ms) otherwise; a key file replaced or rewritten is read again
_KEYS: dict[Path, tuple[tuple[int, int, int], NodeKey]] = {}


def node_key(context: Context) -> NodeKey:
    """The node's signing key from its ``key-file`` node config (created on first start)."""
    path = key_path(context)
    try:
        st = path.stat()
    except OSError:  # not created yet (or unreadable): load_or_create_key decides
        return load_or_create_key(path)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    kept = _KEYS.get(path)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    key = load_or_create_key(path)
    _KEYS[path] = (stamp, key)
    return key


def _coop(msg: Message) -> ConfigRecord:
    return msg.content.config_records[S.COOP]


def _store_spec(context: Context, coop: Mapping[str, Any]) -> str | None:
    spec = context.node_config.get("store") or coop.get("store")
    return str(spec) if spec else None


def _for_app(msg: Message, content: RecordDict) -> Message:
    """A message to the app's handler: ``content`` under ``msg``'s metadata (same run, node,
    type), as if a plain Flower strategy had sent it."""
    # Flower's own constructor argument for a message with given metadata (typed only in its
    # implementation, not its overloads)
    return Message(content=content, metadata=copy.copy(msg.metadata))  # type: ignore[call-overload]


def _app_reply(reply: Message, handler: str) -> RecordDict:
    if reply.has_error():
        raise AppReplyError(f"the app's {handler} failed: {reply.error.reason}")
    return reply.content


def _one_metrics(content: RecordDict, handler: str) -> MetricRecord:
    records = list(content.metric_records.values())
    if len(records) != 1:
        raise AppReplyError(f"the app's {handler} replied with {len(records)} metric records; "
                            "the round needs exactly one")
    return records[0]


def _plain(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: np.asarray(a.numpy()) for k, a in record.items()}


def _non_finite(arrays: Mapping[str, np.ndarray]) -> str:
    for name in sorted(arrays):
        arr = arrays[name]
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            return f"array {name!r} holds NaN or infinite values"
    return ""


# ---------------------------------------------------------------- stages
def _register(msg: Message, context: Context) -> Message:
    from coopflower.client import duties

    key = node_key(context)
    record = ConfigRecord({
        "address": key.address,
        "signature": duties.sign_registration(key, _coop(msg)),
        "partition-id": int(context.node_config.get("partition-id", -1)),
        "model": "",
    })
    return Message(content=RecordDict({P.REGISTRATION: record}), reply_to=msg)


def _reveal(msg: Message, context: Context) -> Message:
    """The node's seed share for the round (committed to in its submission); the app is not
    called. The strategy asks after the randomness block, when the share can no longer help
    anyone choose the block."""
    from coopflower.client import duties

    key = node_key(context)
    record = ConfigRecord({"share": duties.seed_share(key, _coop(msg)),
                           "contributor": key.address})
    return Message(content=RecordDict({P.REVEAL: record}), reply_to=msg)


# how a model leaves the node: (arrays, meta, coop record, store spec) -> blob
Packer = Callable[[Mapping[str, np.ndarray], dict[str, str], Mapping[str, Any], "str | None"],
                  bytes]
# how a verifier scores an encrypted blob: (blob, coop record, context) -> (value, examples)
CipherJudge = Callable[[bytes, Mapping[str, Any], Context], tuple[float, int]]
# what a verifier expects of a plaintext blob's arrays, given its metadata: "" or the reason
BlobCheck = Callable[[Mapping[str, np.ndarray], Mapping[str, str]], str]


def _plain_packer(arrays: Mapping[str, np.ndarray], meta: dict[str, str],
                  coop: Mapping[str, Any], store: str | None) -> bytes:
    from coopflower.blob import pack_arrays

    if P.get_str(coop, "encryption", ""):
        raise CoopModError("this task asks for IVHE encryption: the node needs the IVHE mod "
                           "with the app's model and data (coopflower.client.ivhe_mod)")
    return pack_arrays(dict(arrays), meta)


def train_stage(msg: Message, context: Context, call_next: ClientAppCallable,
           packer: Packer = _plain_packer) -> Message:
    from coopflower.client import duties

    t0 = time.perf_counter()
    coop = _coop(msg)
    content = RecordDict({k: v for k, v in msg.content.items() if k != S.COOP})
    reply = _app_reply(call_next(_for_app(msg, content), context), "train")
    t_app = time.perf_counter() - t0
    if len(reply.array_records) != 1:
        raise AppReplyError(f"the app's train replied with {len(reply.array_records)} array "
                            "records; the round needs exactly one (the trained model)")
    arrays = _plain(next(iter(reply.array_records.values())))
    sent = msg.content.array_records
    if len(sent) == 1 and len(next(iter(sent.values()))) and not coop.get("heterogeneous"):
        # the shapes from the arrays' headers: deserialising the sent model cost as much as
        # the trained one
        sent_shapes = {k: tuple(int(d) for d in v.shape)
                       for k, v in next(iter(sent.values())).items()}
        why = S.shape_mismatch(arrays, sent_shapes)
        if why:
            raise AppReplyError(f"the app's train returned {why}")
    why = _non_finite(arrays)
    if why:
        raise AppReplyError(f"the app's train returned a model whose {why}")
    metrics = _one_metrics(reply, "train")
    examples = metrics.get(P.get_str(coop, "weighted-by", "num-examples"), 0)
    count = int(examples) if isinstance(examples, int | float) else 0
    store = _store_spec(context, coop)
    blob = packer(arrays, {"num-examples": str(count), "classes": ""}, coop, store)
    key = node_key(context)
    sub = duties.make_submission(key, coop, blob, store)
    _submission_to_outbox(context, coop, key.address, sub)
    record = ConfigRecord({
        "cid": sub.cid, "content-hash": sub.content_hash, "signature": sub.signature,
        "contributor": key.address, "model": "", "seed-commit": sub.seed_commit,
    })
    ours = MetricRecord({"compute-seconds": t_app, "blob-bytes": len(blob),
                         "handler-seconds": time.perf_counter() - t0})
    return Message(content=RecordDict({P.SUBMISSION: record, P.METRICS: metrics,
                                       COOP_METRICS: ours}), reply_to=msg)


def verify_stage(msg: Message, context: Context, call_next: ClientAppCallable,
                 judge: CipherJudge | None = None, check: BlobCheck | None = None) -> Message:
    from coopflower.client import duties

    t0 = time.perf_counter()
    coop = _coop(msg)
    ids = P.get_list(coop, "submission-ids", int)
    cids = P.get_list(coop, "cids", bytes)
    hashes = P.get_list(coop, "content-hashes", bytes)
    if not len(ids) == len(cids) == len(hashes):
        raise CoopModError("submission-ids, cids and content-hashes differ in length")
    metric = P.get_str(coop, "metric")  # the threshold is the task's on chain, not the message's
    expected = S.decode_shapes(coop)
    key = node_key(context)
    store = _store_spec(context, coop)
    eval_config = msg.content.config_records.get(P.CONFIG, ConfigRecord())
    out: dict[str, list[Any]] = {"approve": [], "signatures": [], "accuracy-bps": [],
                                 "reasons": []}
    digests: list[bytes] = []  # what each vote is bound to (kept in the outbox too)
    stats = {"compute-seconds": 0.0, "fetched-bytes": 0, "num-examples": 0}
    refs = _references(store, coop)
    if refs:
        check = copy_check(refs, P.get_float(coop, "min-distance", 0.0), check)
    accepted = P.get_list(coop, "accepted-digests", bytes) if "accepted-digests" in coop else []
    if accepted:
        check = digest_check(accepted, check)
    for sid, cid, chash in zip(ids, cids, hashes, strict=True):
        # compute is the model's evaluation only (the app's evaluate, or the cipherspace
        # judge): fetching and checking the blob is the round's coordination
        if judge is None:
            arrays, reason, fetched = _fetch_checked(store, bytes(cid), bytes(chash), expected,
                                                     check)
            scored = arrays is not None
            if scored:
                t1 = time.perf_counter()
                value, n = _app_metric(msg, context, call_next, arrays or {}, eval_config,
                                       metric)
                evaluated = time.perf_counter() - t1
        else:
            blob, reason = _fetch_blob(store, bytes(cid), bytes(chash))
            fetched, scored = len(blob), not reason
            if scored:
                t1 = time.perf_counter()
                value, n, reason = _judged(judge, blob, coop, context)
                evaluated = time.perf_counter() - t1
                scored = not reason
        stats["fetched-bytes"] += fetched
        if scored:
            stats["compute-seconds"] += evaluated
            stats["num-examples"] += n
        # accept: the model is sound; the contract compares the signed score with the task's
        # threshold on chain (a relayer's message cannot move it)
        approve = not reason
        bps = S.metric_bps(value) if scored else 0
        digest = duties.model_digest(bytes(cid), bytes(chash))
        digests.append(digest)
        out["approve"].append(approve)
        out["accuracy-bps"].append(bps)
        out["reasons"].append(reason)
        out["signatures"].append(duties.sign_vote(key, coop, int(sid), digest, approve, bps))
    _to_outbox(context, coop, key.address, ids, digests, out)
    record = ConfigRecord({"submission-ids": [int(i) for i in ids], **out,
                           "verifier": key.address})
    ours = MetricRecord({**stats, "handler-seconds": time.perf_counter() - t0})
    return Message(content=RecordDict({P.VOTES: record, COOP_METRICS: ours}), reply_to=msg)


def _submission_to_outbox(context: Context, coop: Mapping[str, Any], contributor: str,
                          sub: Any) -> None:
    """Keep the signed submission on the node, for its watcher to send if the relayer leaves
    it out of the round's batch (``coopflower.client.watch``)."""
    from coopflower.client.outbox import OutboxSubmission, outbox_path, record_entries
    from coopflower.ledger.eip712 import SignedSubmission

    signed = SignedSubmission(P.get_int(coop, "task-id"), P.get_int(coop, "round"), contributor,
                              sub.cid, sub.content_hash, sub.signature, sub.seed_commit)
    record_entries(outbox_path(key_path(context)), [OutboxSubmission(
        P.get_int(coop, "chain-id"), P.get_str(coop, "contract"), signed)])


def _to_outbox(context: Context, coop: Mapping[str, Any], verifier: str, ids: list[Any],
               digests: list[bytes], out: Mapping[str, list[Any]]) -> None:
    """Keep the signed votes on the node (each bound to the model digest it signed), so that
    its watcher can send them itself if the relayer leaves them out
    (``coopflower.client.watch``)."""
    from coopflower.client.outbox import OutboxVote, outbox_path, record_entries
    from coopflower.ledger.eip712 import SignedVote

    task_id, rnd = P.get_int(coop, "task-id"), P.get_int(coop, "round")
    chain_id, contract = P.get_int(coop, "chain-id"), P.get_str(coop, "contract")
    record_entries(outbox_path(key_path(context)), [
        OutboxVote(chain_id, contract, SignedVote(
            task_id, rnd, int(sid), digest, verifier, bool(ok), int(bps), bytes(sig)))
        for sid, digest, ok, bps, sig in zip(ids, digests, out["approve"], out["accuracy-bps"],
                                             out["signatures"], strict=True)])


def _references(store: str | None, coop: Mapping[str, Any]) -> list[Reference]:
    """The models a submission must differ from, by the CIDs the message names: the global
    model the contributors were sent (``global-cid``) and, in a task with a copy distance, the
    task's earlier accepted models (``accepted-cids``), each fetched and checked against its
    CID. Exact copies of accepted models are refused by their digests (``accepted-digests``),
    which need no fetch."""
    named: list[tuple[bytes, str, str]] = []
    cid = coop.get("global-cid")
    if isinstance(cid, bytes) and cid:
        named.append((bytes(cid), "the global model it was sent",
                      "nothing was trained (free rider)"))
    for prior in coop.get("accepted-cids", []) or []:
        named.append((bytes(prior), f"the accepted model {bytes(prior).hex()[:16]}...",
                      "a copy of a model already accepted in the task"))
    flats = _reference_flats(store, [c for c, _, _ in named])
    return [Reference(flats[c], name, why) for c, name, why in named]


# the references of the last verify message, flattened, by (store, CID): the next message of
# the round names the same ones (a CID names one content, checked against it when fetched),
# and the next round all of them but the global model, so each is fetched and flattened once
_REFERENCES: dict[tuple[str | None, bytes], Flat] = {}


def _reference_flats(store: str | None, cids: list[bytes]) -> dict[bytes, Flat]:
    """Each reference model flattened (``coopflower.client.copies.flatten``), fetched (the
    store checks each blob against its CID) and unpacked unless the last verify message of
    this process named it too. Only the current references are kept, so the process holds no
    more models between messages than during one. Read only: the copy checks never write to
    them."""
    from coopflower.blob import unpack_arrays
    from coopflower.client.duties import open_store

    global _REFERENCES
    kept: dict[tuple[str | None, bytes], Flat] = {}
    for cid in cids:
        flat = _REFERENCES.get((store, cid)) or kept.get((store, cid))
        if flat is None:
            flat = flatten(unpack_arrays(open_store(store).get(cid))[0])
            flat.values.setflags(write=False)
        kept[(store, cid)] = flat
    _REFERENCES = kept
    return {cid: kept[(store, cid)] for cid in cids}


def _fetch_blob(store: str | None, cid: bytes, chash: bytes) -> tuple[bytes, str]:
    """The blob behind ``cid`` (the store checks it) and "" , or what went wrong."""
    from coopflower.client.duties import open_store
    from coopflower.ledger.eip712 import content_hash
    from coopflower.storage.errors import StorageError

    try:
        blob = open_store(store).get(cid)
    except StorageError as exc:
        return b"", f"fetch failed: {exc}"
    if content_hash(blob) != chash:
        return blob, "content hash does not match the blob"
    return blob, ""


def _judged(judge: CipherJudge, blob: bytes, coop: Mapping[str, Any],
            context: Context) -> tuple[float, int, str]:
    """The judge's score of an encrypted blob; a blob it refuses is a "no" with the reason."""
    from coopflower.crypto.errors import IVHEError

    try:
        value, n = judge(blob, coop, context)
    except (IVHEError, ValueError) as exc:
        return float("nan"), 0, f"unusable encrypted model: {exc}"
    if not np.isfinite(value):
        return value, n, "no local samples to evaluate the model on"
    return value, n, ""


def _fetch_checked(store: str | None, cid: bytes, chash: bytes,
                   expected: Mapping[str, tuple[int, ...]], check: BlobCheck | None = None,
                   ) -> tuple[dict[str, np.ndarray] | None, str, int]:
    """The model behind ``cid`` when it passes every check, else ``None`` and the reason."""
    from coopflower.blob import BlobError, unpack_arrays

    blob, reason = _fetch_blob(store, cid, chash)
    if reason:
        return None, reason, len(blob)
    try:
        arrays, meta = unpack_arrays(blob)
    except BlobError as exc:
        return None, f"malformed model blob: {exc}", len(blob)
    why = S.shape_mismatch(arrays, expected) if expected else ""
    why = why or (check(arrays, meta) if check is not None else "") or _non_finite(arrays)
    return (None, why, len(blob)) if why else (arrays, "", len(blob))


def _app_metric(msg: Message, context: Context, call_next: ClientAppCallable,
                arrays: Mapping[str, np.ndarray], config: ConfigRecord,
                metric: str) -> tuple[float, int]:
    """Hand ``arrays`` to the app's evaluate as an ordinary evaluate message; the named metric
    and the number of examples it reports (0 when it reports none)."""
    content = RecordDict({P.ARRAYS: ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                          P.CONFIG: config})
    reply = _app_reply(call_next(_for_app(msg, content), context), "evaluate")
    metrics = _one_metrics(reply, "evaluate")
    if metric not in metrics:
        raise AppReplyError(f"the app's evaluate returned no metric {metric!r} (the task's "
                            f"criterion); it returned {sorted(metrics)}")
    value = metrics[metric]
    if isinstance(value, list) or isinstance(value, bool):
        raise AppReplyError(f"the app's evaluate metric {metric!r} is not a number: {value!r}")
    return float(value), int(metrics.get("num-examples", 0))  # type: ignore[arg-type]
