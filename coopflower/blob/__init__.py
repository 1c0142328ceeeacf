"""The model-blob format: named arrays (and a small str->str metadata dict) to bytes and back.

The bytes are the safetensors format (``safetensors.numpy.load`` reads them, and blobs written
by the safetensors package unpack here): an 8-byte little-endian header length, a JSON header
mapping each name to ``{"dtype", "shape", "data_offsets"}`` (plus an optional
``"__metadata__"`` dict of strings), then the raw little-endian tensor data.

Blobs arrive from the network (IPFS, other nodes), so :func:`unpack_arrays` parses and
validates the header itself before touching the data, within :class:`BlobLimits`, and every
failure raises :class:`BlobError`; no other exception escapes. Never pickle.

Packing is canonical (same arrays and metadata -> same bytes, hence the same CID): tensors are
laid out by decreasing item size, then name, and the header JSON is compact with sorted keys.

Where each concept lives (every name is importable from ``coopflower.blob`` as before):

- :mod:`~coopflower.blob.limits`: the dtypes, :class:`BlobError`, :class:`BlobLimits`
  (``DEFAULT_DTYPES``) and the checks of arrays and metadata;
- :mod:`~coopflower.blob.pack`: :func:`pack_arrays`;
- :mod:`~coopflower.blob.unpack`: :func:`unpack_arrays` and the header's validation;
- :mod:`~coopflower.blob.state_dict`: :func:`state_dict_to_blob` and
  :func:`blob_to_state_dict`.
"""

from __future__ import annotations

from coopflower.blob.limits import DEFAULT_DTYPES, BlobError, BlobLimits
from coopflower.blob.limits import METADATA_KEY as METADATA_KEY
from coopflower.blob.pack import pack_arrays
from coopflower.blob.state_dict import blob_to_state_dict, state_dict_to_blob
from coopflower.blob.unpack import unpack_arrays

__all__ = [
    "BlobError",
    "BlobLimits",
    "DEFAULT_DTYPES",
    "pack_arrays",
    "unpack_arrays",
    "state_dict_to_blob",
    "blob_to_state_dict",
]
