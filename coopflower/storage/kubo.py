"""A client of an IPFS node's Kubo RPC API (kubo, or js-ipfs which serves the same API).

Only ``/api/v0/add``, ``cat``, ``pin/add``, ``block/stat`` and ``version`` are used, over
httpx. The node is trusted for nothing: ``add`` checks the CID the node reports against the
one computed here, and every ``cat`` result is checked against its CID, so a node that lies
about content is caught (:class:`IntegrityError`).

Failures: connection errors, timeouts and 5xx answers without a well-formed RPC error body
(``{"Message", "Code", "Type": "error"}``) are retried with exponential backoff (a refused
connection, for ``unreachable_s`` seconds first: a daemon restarting); a node's
well-formed error answer is final (retrying a deterministic "invalid CID" is pointless).
Missing content makes IPFS nodes hang, so every lookup passes the node a ``timeout``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from coopflower.storage.base import DEFAULT_MAX_BYTES, CIDLike
from coopflower.storage.cid import CHUNK_SIZE, CID, compute_cid, verify
from coopflower.storage.errors import (
    BlockNotFoundError,
    CIDError,
    IntegrityError,
    NodeError,
    SizeLimitError,
    StorageError,
)

__all__ = ["KuboStore", "ADD_PARAMS"]

ADD_PARAMS: dict[str, str] = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": f"size-{CHUNK_SIZE}",
    "hash": "sha2-256",
    "cid-base": "base32",
}
"""What ``add`` asks the node for: the layout :mod:`coopflower.storage.cid` rebuilds."""

UNREACHABLE_S = 30.0
"""Seconds ``open_store``'s Kubo client waits for a node that refuses connections (restarts)."""

_RETRY_STATUS = {500, 502, 503, 504}
_MISSING_HINTS = ("timed out", "deadline exceeded", "not found", "no link named")


def _error_message(body: bytes) -> tuple[str, bool]:
    """The node's error message, and whether the body is a well-formed RPC error."""
    try:
        obj = json.loads(body)
        if isinstance(obj, dict) and obj.get("Type") == "error" and "Message" in obj:
            return str(obj["Message"]), True
    except ValueError:
        pass
    return body[:300].decode("utf-8", errors="replace").strip(), False


class KuboStore:
    """A :class:`~coopflower.storage.base.ContentStore` on a Kubo RPC API.

    Args:
        url: the API's base URL, e.g. ``http://127.0.0.1:5001``.
        timeout: seconds per HTTP request (connect, read, write).
        retries: attempts after the first on connection errors and 5xx answers.
        backoff: first retry delay in seconds; doubled at each retry.
        lookup_timeout: seconds the node may search for content before answering "missing".
        max_bytes: largest object accepted by ``put`` and read by ``get``.
        pin: pin what ``put`` adds.
        unreachable_s: seconds a request keeps retrying, without spending an attempt, while
            the node refuses connections (a restarting daemon); ``open_store`` gives a URL
            :data:`UNREACHABLE_S`.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.2,
        lookup_timeout: float = 10.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        pin: bool = True,
        unreachable_s: float = 0.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise StorageError(f"a Kubo RPC URL starts with http:// or https://, got {url!r}")
        if retries < 0 or backoff < 0 or timeout <= 0 or lookup_timeout <= 0:
            raise StorageError("retries and backoff must be >= 0, timeouts > 0")
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.lookup_timeout = lookup_timeout
        self.max_bytes = max_bytes
        self.pin_on_put = pin
        self.unreachable_s = unreachable_s
        self._client = httpx.Client(
            base_url=self.url + "/api/v0",
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    def __repr__(self) -> str:
        return f"KuboStore({self.url!r})"

    def __enter__(self) -> KuboStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    # -- transport

    @contextmanager
    def _request(
        self, cmd: str, params: dict[str, str] | None = None, files: Any = None
    ) -> Iterator[httpx.Response]:
        """POST ``/api/v0/<cmd>`` with retries; yield the open (streamed) 200 response."""
        delay = self.backoff
        last = ""
        attempt, refused_since = 0, None
        while attempt <= self.retries:
            try:
                request = self._client.build_request("POST", "/" + cmd, params=params, files=files)
                resp = self._client.send(request, stream=True)
            except httpx.TransportError as e:  # connect errors, timeouts
                last = f"{type(e).__name__}: {e}"
                if isinstance(e, httpx.ConnectError):  # the node is down: a restart?
                    refused_since = refused_since or time.monotonic()
                    if time.monotonic() - refused_since < self.unreachable_s:
                        time.sleep(0.25)  # waiting for it costs no attempt
                        continue
                attempt += 1
                if attempt <= self.retries:
                    time.sleep(delay)
                    delay *= 2
                continue
            refused_since = None
            try:
                if resp.status_code != 200:
                    try:
                        message, rpc_error = _error_message(resp.read())
                    except httpx.TransportError as e:
                        message, rpc_error = f"{type(e).__name__}: {e}", False
                    if resp.status_code in _RETRY_STATUS and not rpc_error:
                        last = f"HTTP {resp.status_code}: {message}"
                        attempt += 1
                        if attempt <= self.retries:
                            time.sleep(delay)
                            delay *= 2
                        continue
                    raise NodeError(
                        f"IPFS node {self.url} answered {cmd} with HTTP {resp.status_code}: "
                        f"{message}"
                    )
                try:
                    yield resp
                except httpx.TransportError as e:
                    raise NodeError(
                        f"IPFS node {self.url}: {cmd} broke off: {type(e).__name__}: {e}"
                    ) from e
                return
            finally:
                resp.close()
        down = f", refusing connections for {self.unreachable_s:.0f} s" if refused_since else ""
        raise NodeError(
            f"IPFS node {self.url} failed {cmd} after {self.retries + 1} attempts{down} ({last})"
        )

    def _json(self, cmd: str, params: dict[str, str] | None = None, files: Any = None) -> Any:
        with self._request(cmd, params, files) as resp:
            body = resp.read()
        lines = [ln for ln in body.splitlines() if ln.strip()]
        try:
            return [json.loads(ln) for ln in lines]
        except ValueError:
            raise NodeError(
                f"IPFS node {self.url}: {cmd} returned non-JSON {body[:200]!r}"
            ) from None

    def _lookup_param(self) -> str:
        return f"{max(1, round(self.lookup_timeout * 1000))}ms"

    def _missing(self, e: NodeError) -> bool:
        return any(h in str(e).lower() for h in _MISSING_HINTS)

    # -- RPC commands

    def version(self) -> str:
        """The node's version string (``/api/v0/version``)."""
        answers = self._json("version")
        if not answers or not isinstance(answers[0], dict) or "Version" not in answers[0]:
            raise NodeError(f"IPFS node {self.url}: unexpected version answer {answers!r}")
        return str(answers[0]["Version"])

    def add(self, data: bytes, pin: bool | None = None) -> CID:
        """Add ``data`` as one file with :data:`ADD_PARAMS`; check the node's CID.

        Raises:
            SizeLimitError: ``data`` is larger than ``max_bytes``.
            IntegrityError: the node reports a CID other than the one computed here.
            NodeError: the node is unreachable or refuses.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageError(f"add needs bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > self.max_bytes:
            raise SizeLimitError(f"object of {len(data)} bytes exceeds max_bytes {self.max_bytes}")
        do_pin = self.pin_on_put if pin is None else pin
        params = dict(ADD_PARAMS, pin="true" if do_pin else "false")
        files = {"file": ("blob", data, "application/octet-stream")}
        answers = self._json("add", params, files)
        if not answers or not isinstance(answers[-1], dict) or "Hash" not in answers[-1]:
            raise NodeError(f"IPFS node {self.url}: unexpected add answer {answers!r}")
        try:
            theirs = CID.from_string(str(answers[-1]["Hash"]))
        except CIDError as e:
            raise NodeError(f"IPFS node {self.url} returned an unreadable CID: {e}") from None
        ours = compute_cid(data)
        if theirs.to_bytes() != ours.to_bytes():
            raise IntegrityError(
                f"IPFS node {self.url} stored the {len(data)} bytes as {theirs}, but they are "
                f"{ours}: the node ignored the requested layout or changed the content"
            )
        return ours

    def cat(self, cid: CIDLike) -> bytes:
        """Fetch an object and check it against ``cid``.

        Raises:
            BlockNotFoundError: the node cannot find it within ``lookup_timeout``.
            SizeLimitError: it is larger than ``max_bytes`` (the download stops there).
            IntegrityError: the bytes are not the content ``cid`` names.
            NodeError: the node is unreachable or refuses.
        """
        cid = CID.parse(cid)
        params = {"arg": str(cid), "timeout": self._lookup_param()}
        buf = bytearray()
        try:
            with self._request("cat", params) as resp:
                for chunk in resp.iter_bytes():
                    buf += chunk
                    if len(buf) > self.max_bytes:
                        raise SizeLimitError(
                            f"object {cid} from {self.url} is larger than max_bytes "
                            f"{self.max_bytes}"
                        )
                trailer = resp.headers.get("X-Stream-Error")
        except NodeError as e:
            if self._missing(e):
                raise BlockNotFoundError(f"{cid} not found via {self.url}: {e}") from None
            raise
        if trailer:
            raise NodeError(f"IPFS node {self.url}: cat {cid} stream error: {trailer}")
        data = bytes(buf)
        try:
            verify(cid, data)
        except IntegrityError as e:
            raise IntegrityError(f"IPFS node {self.url} returned wrong bytes: {e}") from None
        return data

    def pin_add(self, cid: CIDLike) -> None:
        """Pin an object (recursively) on the node.

        Raises:
            BlockNotFoundError: the node cannot find it within ``lookup_timeout``.
        """
        cid = CID.parse(cid)
        try:
            self._json("pin/add", {"arg": str(cid), "timeout": self._lookup_param()})
        except NodeError as e:
            if self._missing(e):
                raise BlockNotFoundError(f"cannot pin {cid} via {self.url}: {e}") from None
            raise

    # -- the ContentStore interface

    def put(self, data: bytes) -> CID:
        """Same as :meth:`add` with the store's pin setting."""
        return self.add(data)

    def get(self, cid: CIDLike) -> bytes:
        """Same as :meth:`cat`."""
        return self.cat(cid)

    def pin(self, cid: CIDLike) -> None:
        """Same as :meth:`pin_add`."""
        self.pin_add(cid)

    def has(self, cid: CIDLike) -> bool:
        """Whether the node finds the object's root block within ``lookup_timeout``."""
        cid = CID.parse(cid)
        try:
            self._json("block/stat", {"arg": str(cid), "timeout": self._lookup_param()})
        except NodeError as e:
            if self._missing(e):
                return False
            raise
        return True
