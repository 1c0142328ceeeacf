"""Sending a batch of messages to nodes and collecting the replies, with a short pull interval.

Flower's ``Grid.send_and_receive`` pushes the messages and then pulls for replies at a fixed
interval: 0.1 s in simulation and 3 s against a SuperLink, so a phase whose replies are all in
after 1.1 s still waits until 3 s. The coordinated strategy has three message phases a round
(train, reveal and verify), so it pulls with a growing interval instead: ``first_interval``
after the push, then ``growth`` times longer each empty pull, at most ``max_interval`` (0.1 s).
Replies that arrive early are seen early; a long phase costs the SuperLink a pull every
``max_interval``. In a simulation (Flower's ``InMemoryGrid``) a pull is a look-up in the
process's own state, not a request, so it pulls every 5 ms (``IN_MEMORY``): at 0.1 s the last
reply of each phase waited 0.05 s on average to be seen.

In a simulation the strategy also keeps only a window of messages in flight
(:func:`in_flight_window`): Flower's simulation engine (1.42) looks for each node's next
message by scanning every stored message, node after node, every 0.1 s, under the state's lock
and the GIL the ServerApp shares, so with n nodes and m undelivered-or-unanswered messages a
sweep costs n * m checks. With all 1000 of a 1000-node phase pushed at once that is a million
checks a sweep, and the phase ran at 1.5 replies a second (bench/scale_round.py); a window of
``SIM_SWEEP_BUDGET / n`` keeps a sweep near ten thousand checks whatever n.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import Message
from flwr.serverapp import Grid

__all__ = ["IN_MEMORY", "PullSchedule", "SIM_SWEEP_BUDGET", "default_schedule", "in_flight_window",
           "send_and_receive"]


@dataclass(frozen=True)
class PullSchedule:
    """How often to pull for replies: seconds before the first pull and the cap, and the
    factor the interval grows by after each pull that leaves replies missing."""

    first_interval: float = 0.01
    max_interval: float = 0.1
    growth: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.first_interval <= self.max_interval or self.growth < 1:
            raise ValueError(f"bad pull schedule {self}")

    def intervals(self) -> Iterable[float]:
        """The successive sleep intervals (endless)."""
        interval = self.first_interval
        while True:
            yield interval
            interval = min(interval * self.growth, self.max_interval)


# a simulation's grid: pulling is a look-up in memory, so pull often
IN_MEMORY = PullSchedule(first_interval=0.005, max_interval=0.005)


def _in_memory(grid: Grid) -> bool:
    try:
        from flwr.superlink.grid import InMemoryGrid
    except ImportError:  # another Flower layout: the network's behaviour is always safe
        return False
    return isinstance(grid, InMemoryGrid)


def default_schedule(grid: Grid) -> PullSchedule:
    """``IN_MEMORY`` for a simulation's grid, else the default schedule (a SuperLink's grid
    pulls over the network)."""
    return IN_MEMORY if _in_memory(grid) else PullSchedule()


# checks of stored messages one sweep of Flower's simulation engine may cost (nodes * messages)
SIM_SWEEP_BUDGET = 8192


def in_flight_window(grid: Grid) -> int | None:
    """Messages to keep in flight at once: ``SIM_SWEEP_BUDGET / nodes`` (at least 4) in a
    simulation, whose engine scans every stored message for each node; ``None`` (all at once)
    against a SuperLink, where each node pulls its own."""
    if not _in_memory(grid):
        return None
    return max(4, SIM_SWEEP_BUDGET // max(1, len(list(grid.get_node_ids()))))


def send_and_receive(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float | None,
    schedule: PullSchedule | None = None,
    window: int | None = -1,
) -> list[Message]:
    """Push ``messages`` and pull their replies until all are in or ``timeout`` passes.

    Args:
        grid: the ServerApp's grid.
        messages: the messages to send.
        timeout: seconds to wait for replies (``None``: until every reply is in).
        schedule: the pull intervals (``None``: ``default_schedule(grid)``).
        window: messages in flight at once, the next pushed as replies come in (``None``: all
            at once; default: ``in_flight_window(grid)``).

    Returns:
        The replies received (those still missing at the deadline, or never pushed by then,
        are left out, as with ``Grid.send_and_receive``).
    """
    schedule = schedule or default_schedule(grid)
    queue = list(messages)
    if window is not None and window < 0:
        window = in_flight_window(grid)
    size = len(queue) if window is None else max(1, window)
    pending = set(grid.push_messages(queue[:size]))
    queue = queue[size:]
    deadline = None if timeout is None else time.monotonic() + timeout
    replies: list[Message] = []
    for interval in schedule.intervals():
        got = list(grid.pull_messages(pending))
        replies.extend(got)
        pending.difference_update(m.metadata.reply_to_message_id for m in got)
        if queue and len(pending) < size:  # refill the window
            more, queue = queue[:size - len(pending)], queue[size - len(pending):]
            pending.update(grid.push_messages(more))
        if not pending:
            break
        if deadline is None:
            time.sleep(interval)
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    return replies
