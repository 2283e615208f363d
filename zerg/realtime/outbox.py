"""The events a process has published and its bus has not yet delivered, in order.

A bus that does I/O (Redis) must not make publishers wait on it: they commit
(on SQLite, inside this process's write turn) or stream a run's reply. So
publishing puts the event here, which never blocks, and one publisher thread
takes events from the front, in the order they were put, and releases them
once they are delivered: a failed delivery is retried from the same place.

While the bus is down the outbox fills up, within ``limit`` events. When it
is full, the least valuable event gives way: a new stream chunk is dropped
(the stored reply has the whole text); any other event pushes out the oldest
chunk, or if none is left the oldest event that ends no run. The end of a run
(:attr:`zerg.realtime.events.Event.ends_run`) is never dropped, even past the
limit: watchers must learn how every run ended, and there are only a few per
run. Drops are counted and logged, once per outage.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections import deque
from itertools import islice

from zerg.realtime.events import Event
from zerg.realtime.events import EventType

log = logging.getLogger(__name__)

# How much an event is worth keeping: the lower, the sooner it gives way.
CHUNK, UPDATE, END = 0, 1, 2


def worth(event: Event) -> int:
    if event.type is EventType.STREAM_CHUNK:
        return CHUNK
    return END if event.ends_run else UPDATE


class Outbox:
    """A bounded FIFO of events, numbered as they are put, with dropping by worth."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ready = threading.Condition()
        self._events: OrderedDict[int, Event] = OrderedDict()
        # The numbers of the queued chunks and of the other droppable events,
        # oldest first: exactly those still in _events.
        self._droppable: dict[int, deque[int]] = {CHUNK: deque(), UPDATE: deque()}
        self._next = 0
        self._dropped = 0

    def __len__(self) -> int:
        with self._ready:
            return len(self._events)

    def put(self, event: Event) -> None:
        """Queue an event behind the others, making room by worth if the outbox is full."""
        rank = worth(event)
        with self._ready:
            if len(self._events) >= self.limit and not self._make_room(rank):
                self._count_drop()
                return
            number, self._next = self._next, self._next + 1
            self._events[number] = event
            if rank != END:
                self._droppable[rank].append(number)
            self._ready.notify()

    def _make_room(self, rank: int) -> bool:
        """Drop the oldest event worth less than one of ``rank`` (or as much); False if none.

        A chunk makes no room: it is the one dropped. An end that finds only
        ends is kept beyond the limit.
        """
        if rank == CHUNK:
            return False
        for victims in (self._droppable[CHUNK], self._droppable[UPDATE]):
            if victims:
                del self._events[victims.popleft()]
                self._count_drop()
                return True
        return rank == END

    def _count_drop(self) -> None:
        if not self._dropped:
            log.warning(
                "the event bus is behind by %d events: dropping stream chunks first, then "
                "updates that end no run (a run's end is always kept)",
                self.limit,
            )
        self._dropped += 1

    def peek(self, count: int, timeout: float) -> list[tuple[int, Event]]:
        """Return up to ``count`` events from the front, waiting up to ``timeout`` for one."""
        with self._ready:
            if not self._events:
                self._ready.wait(timeout)
            return list(islice(self._events.items(), count))

    def release(self, entries: list[tuple[int, Event]]) -> None:
        """Forget delivered events (those dropped meanwhile are gone already)."""
        with self._ready:
            for number, event in entries:
                if self._events.pop(number, None) is None:
                    continue
                rank = worth(event)
                if rank != END:
                    # Delivered from the front, so it is its queue's oldest.
                    self._droppable[rank].popleft()

    def take_dropped(self) -> int:
        """Return how many events were dropped since the last call, and start counting anew."""
        with self._ready:
            dropped, self._dropped = self._dropped, 0
            return dropped

    def wake(self) -> None:
        """Wake a publisher waiting in :meth:`peek` (it is being stopped)."""
        with self._ready:
            self._ready.notify_all()
