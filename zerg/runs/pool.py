"""The app's bounded pool of run workers, and the cancel switches of its runs.

The pool knows run ids, not what executing one means: ``init_app`` is handed
that (``zerg.runs.execution.execute``), so the domain of runs can hand a
committed run to the pool without the pool depending on it. Cancels reach it
as events on the bus (``run_cancel_requested``), whichever process decided
them: the pool of the process that owns the run flips its switch.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from flask import Flask
from flask import current_app

from zerg.domain_errors import Busy
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType

EXTENSION_KEY = "zerg.runs.pool"

# What a worker does with a run: its id, and the switch that asks it to stop.
Work = Callable[[int, threading.Event], None]


class Runner:
    """A bounded pool of worker threads executing runs by id, each with a cancel switch."""

    def __init__(self, app: Flask, work: Work) -> None:
        # Names this process as the owner of the runs it queues and executes.
        self.instance_id = uuid.uuid4().hex[:16]
        self._work = work
        self._pool = ThreadPoolExecutor(
            max_workers=app.config["RUN_WORKERS"], thread_name_prefix="zerg-run"
        )
        # Runs take turns on a few of the database pool's connections: 500
        # runs ending at once would otherwise take every connection, and a
        # request arriving meanwhile waited behind all of them.
        turns = app.config["RUN_DATABASE_TURNS"]
        self._database_turns = threading.BoundedSemaphore(turns)
        self._lock = threading.Lock()
        self._runs: dict[int, tuple[threading.Event, Future[None]]] = {}
        # Starts: runs with a worker and not begun, and requests admitted to
        # queue one, as many together as there are turns; the requests past
        # that wait in line (see :meth:`admission`).
        self._starts_at_once = turns
        self._admission_timeout = app.config["DATABASE_POOL_TIMEOUT"]
        self._beginning: set[int] = set()
        self._admitted = 0
        self._line: deque[threading.Event] = deque()
        # Runs submitted again while their worker was still on its way out.
        self._again: set[int] = set()
        self._stopping = False
        self._interrupting = False

    @property
    def interrupting(self) -> bool:
        """True once shutdown stops the runs: they end interrupted, not cancelled."""
        return self._interrupting

    def submit(self, run_id: int) -> None:
        """Execute a committed, queued run in the background, once its worker here is done.

        A run submitted while a worker still holds it goes again when that
        worker is done: a run that waited for approval is queued again, and
        submitted, by whoever decides, and that can be before the worker
        that parked it has returned. A run begins only once, so a second
        go at a run that is not queued does nothing. Once shutting down, the
        run is left queued: the shutdown marks it.
        """
        with self._lock:
            if self._stopping:
                return
            if run_id in self._runs:
                self._again.add(run_id)
                return
            self._start(run_id)

    def _start(self, run_id: int) -> None:
        """Hand a run to a worker thread; the caller holds the lock."""
        switch = threading.Event()
        future = self._pool.submit(self._execute, run_id, switch)
        self._runs[run_id] = (switch, future)

    def _execute(self, run_id: int, switch: threading.Event) -> None:
        # A run waiting for a worker (all RUN_WORKERS busy) does not count as
        # beginning: requests are not held up by runs that cannot begin yet.
        with self._lock:
            self._beginning.add(run_id)
        try:
            self._work(run_id, switch)
        finally:
            with self._lock:
                self._end_start(run_id)
                self._runs.pop(run_id, None)
                if run_id in self._again:
                    self._again.discard(run_id)
                    if not self._stopping:
                        self._start(run_id)

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Wait in line until this process may start one more run; hold the place meanwhile.

        Requests that queue runs wait here, before they touch the database,
        while RUN_DATABASE_TURNS runs are beginning or about to: under a burst
        each run then begins as soon as it is queued, and a request that
        would only have added to the runs waiting for the CPU waits in line,
        holding nothing but its own greenlet (or thread). First come, first
        admitted; one that waits longer than DATABASE_POOL_TIMEOUT gets Busy
        (503 with Retry-After). Runs the process starts on its own (ticks,
        follow-ups, resumed runs) take their place without waiting.
        """
        with self._lock:
            turn = None
            if self._line or self._starts() >= self._starts_at_once:
                turn = threading.Event()
                self._line.append(turn)
            else:
                self._admitted += 1
        if turn is not None and not turn.wait(self._admission_timeout):
            with self._lock:
                # Admitted between the timeout and here: then it goes ahead.
                if not turn.is_set():
                    self._line.remove(turn)
                    raise Busy("the server is starting as many runs as it may; retry shortly")
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1
                self._admit_next()

    def begun(self, run_id: int) -> None:
        """Say a run has begun (or will not): its place goes to the next request in line."""
        with self._lock:
            self._end_start(run_id)

    def _starts(self) -> int:
        return len(self._beginning) + self._admitted

    def _end_start(self, run_id: int) -> None:
        """The caller holds the lock."""
        if run_id in self._beginning:
            self._beginning.discard(run_id)
            self._admit_next()

    def _admit_next(self) -> None:
        """The caller holds the lock."""
        while self._line and self._starts() < self._starts_at_once:
            self._admitted += 1
            self._line.popleft().set()

    @contextmanager
    def database_turn(self) -> Iterator[None]:
        """Wait for one of the connections runs may hold at once, and hold it meanwhile."""
        with self._database_turns:
            yield

    def cancel(self, run_id: int) -> bool:
        """Ask this process's worker to stop the run; False if it runs nowhere here."""
        with self._lock:
            entry = self._runs.get(run_id)
        if entry is None:
            return False
        entry[0].set()
        return True

    def on_event(self, event: Event) -> None:
        """Stop a run of this process that was cancelled, here or elsewhere (bus subscriber)."""
        if event.type is EventType.RUN_CANCEL_REQUESTED and event.data["owner"] == self.instance_id:
            self.cancel(event.data["run_id"])

    def shutdown(self, grace: float = 0.0) -> bool:
        """Stop taking runs; give running ones ``grace`` seconds, then stop them.

        Runs still waiting for a worker never start (the caller marks them);
        only runs already executing are waited for. Stopped runs keep what they
        streamed. Only the first call does anything, and says so by returning True.
        """
        with self._lock:
            if self._stopping:
                return False
            self._stopping = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for run_id, (_switch, future) in list(self._runs.items()):
                if future.cancelled():
                    del self._runs[run_id]
        deadline = time.monotonic() + grace
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            self._interrupting = True
            for switch, _future in self._runs.values():
                switch.set()
        self._pool.shutdown(wait=True)
        return True

    def held(self) -> frozenset[int]:
        """Return the ids of the runs submitted here that have not finished (or been dropped).

        A run is held from its submission until its worker is done with it,
        its end stored or not: its beginning and its end both fall inside.
        """
        with self._lock:
            return frozenset(self._runs)

    def in_flight(self) -> int:
        """Count the runs submitted here that have not finished (or been dropped)."""
        with self._lock:
            return len(self._runs)


def get_runner(app: Flask | None = None) -> Runner:
    """Return the current (or given) app's runner."""
    target = app if app is not None else current_app
    runner: Runner = target.extensions[EXTENSION_KEY]
    return runner


def init_app(app: Flask, work: Work) -> None:
    """Give the app its pool (worker threads start with the first run)."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.runs.pool is already registered on this app")
    runner = Runner(app, work)
    app.extensions[EXTENSION_KEY] = runner
    events.get_bus(app).subscribe(runner.on_event)
