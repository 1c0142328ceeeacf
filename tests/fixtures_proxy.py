"""A slow, lossy TCP link on loopback: an asyncio proxy that delays every chunk it forwards and
drops a connection with some probability.

``LossyProxy(target_port, delay_s=..., drop_p=...)`` listens on ``127.0.0.1:<port>`` and
forwards each connection to ``127.0.0.1:<target_port>`` (TLS passes through untouched: the
proxy sees only bytes). Every chunk waits ``delay_s`` before it is written on, in either
direction; each chunk, with probability ``drop_p``, closes both ends of its connection instead
(a link that loses connections mid-request). Its loop runs in a daemon thread; ``stats`` counts
connections, chunks, bytes and drops. It only ever connects to loopback.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LinkStats", "LossyProxy"]

LOOPBACK = "127.0.0.1"


@dataclass
class LinkStats:
    """What the proxy did: connections accepted, chunks and bytes forwarded, connections
    dropped, and connections that could not reach the target."""

    connections: int = 0
    chunks: int = 0
    bytes: int = 0
    dropped: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


class LossyProxy:
    """A delaying, dropping TCP proxy from an ephemeral loopback port to ``target_port``."""

    def __init__(self, target_port: int, delay_s: float = 0.05, drop_p: float = 0.0,
                 seed: int = 0) -> None:
        if delay_s < 0 or not 0.0 <= drop_p < 1.0:
            raise ValueError(f"delay_s must be >= 0 and drop_p in [0, 1): {delay_s}, {drop_p}")
        self.target_port, self.delay_s, self.drop_p = target_port, delay_s, drop_p
        self.stats = LinkStats()
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="lossy-proxy")
        self.port = 0

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = fut.result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def aim(self, target_port: int) -> str:
        """Forward new connections to ``target_port``; returns the proxy's own address."""
        self.target_port = target_port
        return self.address

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.add(connections=1)
        try:
            up_r, up_w = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:
            self.stats.add(refused=1)
            writer.close()
            return
        def drop() -> None:  # a drop ends both directions at once, no orderly close
            self.stats.add(dropped=1)
            writer.transport.abort()
            up_w.transport.abort()

        await asyncio.gather(self._pipe(reader, up_w, drop), self._pipe(up_r, writer, drop))
        for w in (writer, up_w):
            w.close()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    drop: Callable[[], None]) -> None:
        try:
            while True:
                chunk = await src.read(65536)
                if not chunk:
                    break
                await asyncio.sleep(self.delay_s)
                if self.drop_p and self._rng.random() < self.drop_p:
                    drop()
                    return
                dst.write(chunk)
                await dst.drain()
                self.stats.add(chunks=1, bytes=len(chunk))
            if dst.can_write_eof():
                dst.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass  # the other direction dropped the connection, or the peer went away
