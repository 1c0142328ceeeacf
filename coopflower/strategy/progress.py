"""Per-phase timing and a progress line per phase per round."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

__all__ = ["PhaseLog", "PhaseRecord", "transactions"]


@dataclass
class PhaseRecord:
    """One phase of one round: ``seconds`` of wall time and a short ``detail``."""

    round: int
    phase: str
    seconds: float
    detail: str = ""


@dataclass
class PhaseLog:
    """Collects ``PhaseRecord`` s and prints ``[round r/n] phase: detail (s)`` per phase."""

    num_rounds: int
    stream: TextIO | None = field(default_factory=lambda: sys.stderr)
    records: list[PhaseRecord] = field(default_factory=list)

    @contextmanager
    def phase(self, rnd: int, name: str) -> Iterator[PhaseRecord]:
        """Time a phase; the caller may set ``record.detail`` inside the block."""
        rec = PhaseRecord(rnd, name, 0.0)
        start = time.perf_counter()
        try:
            yield rec
        finally:
            rec.seconds = time.perf_counter() - start
            self.records.append(rec)
            if self.stream is not None:
                tail = f": {rec.detail}" if rec.detail else ""
                print(f"[round {rnd}/{self.num_rounds}] {name:<8}{tail} ({rec.seconds:.2f} s)",
                      file=self.stream, flush=True)

    def seconds(self, rnd: int | None = None) -> dict[str, float]:
        """Seconds per phase name, summed over rounds (or for round ``rnd``)."""
        out: dict[str, float] = {}
        for r in self.records:
            if rnd is None or r.round == rnd:
                out[r.phase] = out.get(r.phase, 0.0) + r.seconds
        return out


def transactions(n: int) -> str:
    """``"1 transaction"``, ``"3 transactions"``: how many a phase's line says it sent."""
    return f"{n} transaction" + ("" if n == 1 else "s")
