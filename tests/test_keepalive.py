"""The hub's keepalive: one thread pings every connection, each once per interval.

Over a real server, tests/test_ws.py shows what a client sees (a silent one is
dropped with 1008, one that answers stays, a close left unanswered ends).
"""

from __future__ import annotations

import threading
import time

from tests.helpers import wait_for
from zerg.realtime.keepalive import BATCH_SECONDS
from zerg.realtime.keepalive import Keepalive


class Recorder:
    """A connection that notes when it was pinged, and can be told it is gone."""

    def __init__(self, name: str, pings: list[tuple[str, float]]) -> None:
        self.name = name
        self.gone = False
        self._pings = pings

    def ping(self) -> bool:
        if self.gone:
            return False
        self._pings.append((self.name, time.monotonic()))
        return True


def keepalive_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "zerg-ws-keepalive"]


def test_each_connection_is_pinged_every_interval_in_the_order_it_joined() -> None:
    pings: list[tuple[str, float]] = []
    keepalive = Keepalive(0.2)
    first, second = Recorder("first", pings), Recorder("second", pings)
    joined = time.monotonic()
    keepalive.watch(first)
    time.sleep(0.05)
    keepalive.watch(second)
    wait_for(lambda: len(pings) >= 6, "three pings each")
    assert [name for name, _ in pings[:6]] == ["first", "second"] * 3
    first_times = [at for name, at in pings if name == "first"]
    assert first_times[0] - joined >= 0.2
    # One interval apart, up to a batch late, give or take the machine's scheduling.
    gaps = [later - earlier for earlier, later in zip(first_times, first_times[1:], strict=False)]
    assert all(0.18 <= gap <= 0.2 + BATCH_SECONDS + 0.2 for gap in gaps)
    keepalive.forget(first)
    keepalive.forget(second)


def test_a_connection_that_is_over_is_not_pinged_again() -> None:
    pings: list[tuple[str, float]] = []
    keepalive = Keepalive(0.1)
    staying, leaving = Recorder("staying", pings), Recorder("leaving", pings)
    keepalive.watch(staying)
    keepalive.watch(leaving)
    leaving.gone = True
    wait_for(lambda: len(pings) >= 4, "four pings")
    assert {name for name, _ in pings} == {"staying"}
    keepalive.forget(staying)
    keepalive.forget(leaving)


def test_the_thread_ends_when_the_last_connection_leaves_and_comes_back_with_the_next() -> None:
    # The other tests' threads end as this one's should.
    wait_for(lambda: not keepalive_threads(), "earlier keepalive threads to end", timeout=5)
    pings: list[tuple[str, float]] = []
    keepalive = Keepalive(30)
    connection = Recorder("only", pings)
    keepalive.watch(connection)
    assert len(keepalive_threads()) == 1
    keepalive.forget(connection)
    # Well before the 30 s its ping would have fallen due.
    wait_for(lambda: not keepalive_threads(), "the thread to end", timeout=5)

    short = Keepalive(0.05)
    again = Recorder("again", pings)
    short.watch(again)
    short.forget(again)
    short.watch(again)
    wait_for(lambda: len(pings) >= 2, "pings after a connection came back")
    short.forget(again)
    wait_for(lambda: not keepalive_threads(), "the thread to end", timeout=5)
