"""Turns that keep one process's after-commit actions in the order of its commits.

A writer takes a turn just before its COMMIT (:meth:`CommitOrder.take`),
and once the COMMIT has returned waits for the writers with earlier turns
to have run their actions (:meth:`CommitOrder.wait`) before it runs its own
and passes the turn on (:meth:`CommitOrder.done`). Two writers ordered by a
row lock take their turns in that order: the second cannot reach its COMMIT
before the first's has released the lock, and the first took its turn
before sending it. So announcements leave in commit order, while the
COMMITs themselves overlap.

A lock held from before the COMMIT until the actions had run did the same
with one COMMIT in flight per process at a time: under gevent, where a round
trip waits for every other ready greenlet, 500 runs beginning at once queued
on it for about 0.2 s a commit.
"""

from __future__ import annotations

import threading


class CommitOrder:
    """Numbered turns, each passed on in number order once it is done or given back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = 0
        # The turn whose actions run next; turns given back before it came, skipped then.
        self._current = 0
        self._given_back: set[int] = set()
        self._waiters: dict[int, threading.Event] = {}

    def take(self) -> int:
        """Take the next turn; every take is followed by :meth:`done`, whatever happens."""
        with self._lock:
            turn = self._taken
            self._taken += 1
            return turn

    def wait(self, turn: int) -> None:
        """Wait until every earlier turn is done (its actions run, or its commit failed)."""
        with self._lock:
            if self._current == turn:
                return
            arrived = self._waiters[turn] = threading.Event()
        arrived.wait()

    def done(self, turn: int) -> None:
        """End a turn: after its actions ran, or, out of order, when its commit failed."""
        with self._lock:
            if turn != self._current:
                self._given_back.add(turn)
                return
            self._current += 1
            while self._current in self._given_back:
                self._given_back.discard(self._current)
                self._current += 1
            arrived = self._waiters.pop(self._current, None)
        if arrived is not None:
            arrived.set()
