"""The coordinated round with IVHE-encrypted models: ``coop_mod`` plus the app's model and data.

Encryption needs what the plaintext mod never does: the app's model (to trace its structure and
encrypt its first layer) and, on a verifier, the inputs to evaluate on in cipherspace (the
app's own evaluate cannot run an encrypted model). The app names both once::

    from coopflower.client.ivhe_mod import make_ivhe_mod
    from imgapp.task import Net, load_data

    def verify_data(context):                       # the node's own validation split
        _, val = load_data(context.node_config["partition-id"],
                           context.node_config["num-partitions"])
        return val                                  # (x, y) batches, x in the declared range

    app = ClientApp(mods=[make_ivhe_mod(Net, verify_data)])

The train stage calls the app's train as ``coop_mod`` does, loads the arrays it returns into
``Net()``, encrypts the first weight layer element-wise under the initiator's public key
(fetched by the CID in the task's message, checked by the store), with the task's input range,
and stores the blob. The verify stage refuses a blob that is not a valid encrypted model of
``Net``'s structure and otherwise scores it by the accuracy of the cipherspace pass on
``verify_data``: the figure the task must name, ``TaskConfig(metric="ivhe-accuracy", ...)``,
since no metric of the app's own evaluate exists for a model it cannot run. Messages without
encryption are handled as by ``coop_mod``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from coopflower.client import mod as M
from coopflower.client import protocol as P
from coopflower.client import stages as S

__all__ = ["IVHE_METRIC", "make_ivhe_mod"]

IVHE_METRIC = S.IVHE_METRIC

ModelFn = Callable[[], torch.nn.Module]
DataFn = Callable[[Context], Iterable[Any]]


def _batches(data: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``(x, y)`` batches, or a DataLoader's dict batches with two tensors."""
    xs, ys = [], []
    for batch in data:
        if isinstance(batch, Mapping):
            batch = tuple(batch.values())
        x, y = batch[0], batch[1]
        xs.append(np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x))
        ys.append(np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y))
    if not xs:
        return np.zeros((0,)), np.zeros((0,), dtype=np.int64)
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def _input_range(coop: Mapping[str, Any]) -> tuple[float, float]:
    lo, hi = coop.get("ivhe-input-lo"), coop.get("ivhe-input-hi")
    if not isinstance(lo, int | float) or not isinstance(hi, int | float):
        raise M.CoopModError("the task's message lacks the declared input range "
                             "(ivhe-input-lo, ivhe-input-hi)")
    return float(lo), float(hi)


def make_ivhe_mod(model_fn: ModelFn, verify_data: DataFn) -> Callable[..., Message]:
    """A mod like ``coop_mod`` that encrypts the app's model and verifies in cipherspace.

    Args:
        model_fn: the app's model constructor (``Net``): its structure is traced, and the arrays
            the app's train returns load into it.
        verify_data: the node's verification data: ``(x, y)`` batches (e.g. a DataLoader), x in
            the range the task declares.

    Returns:
        The mod, for ``ClientApp(mods=[...])``.
    """
    from coopflower.crypto import check_encryptable

    check_encryptable(model_fn())  # an unsupported structure fails when the app loads

    def pack(arrays: Mapping[str, np.ndarray], meta: dict[str, str], coop: Mapping[str, Any],
             store: str | None) -> bytes:
        from coopflower.blob import pack_arrays
        from coopflower.client.duties import open_store
        from coopflower.crypto import encrypt_model, public_key_from_bytes

        strategy = P.get_str(coop, "encryption", "")
        if not strategy:
            return pack_arrays(dict(arrays), meta)
        if strategy != "elementwise":
            raise M.CoopModError(f"encryption {strategy!r}: a contributor holds only the public "
                                 "key, so it can encrypt 'elementwise' only")
        key_cid = coop.get("ivhe-key-cid")
        if not isinstance(key_cid, bytes):
            raise M.CoopModError("the task's message lacks the IVHE public key's CID")
        pk = public_key_from_bytes(open_store(store).get(key_cid))
        model = model_fn()
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        enc = encrypt_model(model, pk, "elementwise", P.get_int(coop, "ivhe-p", 2**7),
                            P.get_int(coop, "ivhe-q", 1000), input_range=_input_range(coop),
                            metadata=meta, arch=type(model).__name__)
        return enc.to_bytes()

    def judge(blob: bytes, coop: Mapping[str, Any], context: Context) -> tuple[float, int]:
        from coopflower.crypto import EncryptedModel, encrypted_accuracy

        enc = EncryptedModel.from_bytes(blob)
        x, y = _batches(verify_data(context))
        return encrypted_accuracy(enc, model_fn(), x, y), int(len(y))

    def ivhe_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        stage = S.stage_of(msg.content.config_records)
        if stage == S.TRAIN:
            return M.train_stage(msg, context, call_next, packer=pack)
        if stage == S.VERIFY:
            coop = msg.content.config_records[S.COOP]
            encrypted = bool(P.get_str(coop, "encryption", ""))
            return M.verify_stage(msg, context, call_next, judge=judge if encrypted else None)
        return M.coop_mod(msg, context, call_next)

    return ivhe_mod
