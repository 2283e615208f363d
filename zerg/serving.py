"""What a serving process runs besides requests, and how it stops.

``create_app`` builds the pieces but starts nothing, so tests and CLI commands
stay free of background threads. The serving entry points (``flask serve``,
``wsgi.py`` under gunicorn) call :func:`start` in the process that serves:

- it takes this runner's liveness lock, so other processes can tell its runs
  from those of a process that died;
- it marks runs whose owner died as interrupted;
- with ``SCHEDULER_ENABLED``, it campaigns for the scheduler lock: exactly
  one process (of all workers, on all hosts sharing the database) runs the
  scheduler, and when it dies the lock passes to another within a poll.

Then a keeper thread checks the locks every ``SCHEDULER_LOCK_POLL_SECONDS``:
a lock can be lost while its process lives (its database connection killed),
so the liveness lock is taken again, and a holder that lost the scheduler
lock stops scheduling until it wins the lock again. While it holds it, the
holder reconciles its jobs with the database at the same pace. At the same
pace the keeper sweeps this process's own runs: those its pool lost track of
(their end could not be stored) end, those never handed to it are handed
over (``lifecycle.sweep_lost``). No process judges its own runs by its lock.

:func:`stop` undoes it in order, for SIGTERM and for exit.
"""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass
from dataclasses import field

from flask import Flask

from zerg import db
from zerg import migrate
from zerg.errors import StartupError
from zerg.locks import Locks
from zerg.locks import make_locks
from zerg.realtime import events
from zerg.realtime.hub import get_hub
from zerg.runs import lifecycle
from zerg.runs import scheduler
from zerg.runs.pool import get_runner

EXTENSION_KEY = "zerg.serving"
# "Service Restart": the server is going away; clients should reconnect.
RESTART_CLOSE_CODE = 1012

log = logging.getLogger(__name__)


@dataclass
class Running:
    """A started process's locks and the thread that keeps them."""

    locks: Locks
    stopping: threading.Event = field(default_factory=threading.Event)
    keeper: threading.Thread | None = None


def check_processes(app: Flask, processes: int) -> None:
    """Refuse to serve from several processes with events that stay inside one.

    With the in-memory bus, a websocket client would hear only what its own
    worker did. Gunicorn's configuration calls this with its worker count
    before any worker starts.
    """
    if processes > 1 and app.config["EVENT_BACKEND"] == "memory":
        raise StartupError(
            f"EVENT_BACKEND=memory keeps events inside one process, so {processes} workers "
            "would split them: set EVENT_BACKEND=redis (and REDIS_URL) or WEB_CONCURRENCY=1"
        )


def start(app: Flask) -> None:
    """Start this serving process's background work (once per app).

    The database comes first: upgraded where the configuration allows it, and
    refused (:class:`zerg.migrate.SchemaError`) unless it is at head.
    """
    if EXTENSION_KEY in app.extensions:
        return
    migrate.prepare(app)
    events.get_bus(app).start()
    locks = make_locks(db.get_database(app).engine)
    state = Running(locks=locks)
    app.extensions[EXTENSION_KEY] = state
    locks.try_acquire(lifecycle.liveness_lock(get_runner(app).instance_id))
    with db.session_scope(app) as session:
        lifecycle.mark_interrupted(session, dead=locks)
    # The first attempt is made here, so a lone process has its scheduler
    # running when start() returns.
    if app.config["SCHEDULER_ENABLED"]:
        _try_lead(app, state)
    state.keeper = threading.Thread(target=_keep, args=(app, state), name="zerg-locks", daemon=True)
    state.keeper.start()
    log.info(
        "instance %s serving %s with %s events",
        get_runner(app).instance_id,
        migrate.shown_url(app),
        app.config["EVENT_BACKEND"],
    )
    atexit.register(stop, app)


def _try_lead(app: Flask, state: Running) -> bool:
    """Take the scheduler lock if it is free, and start the scheduler if so."""
    if not state.locks.try_acquire(scheduler.LOCK):
        return False
    log.info("scheduler holder is now instance %s", get_runner(app).instance_id)
    scheduler.get_scheduler(app).start(locks=state.locks)
    return True


def _keep(app: Flask, state: Running) -> None:
    """Check the locks and sweep this process's runs every poll until the process stops."""
    interval = app.config["SCHEDULER_LOCK_POLL_SECONDS"]
    while not state.stopping.wait(interval):
        try:
            _check_locks(app, state)
        except Exception:
            log.exception("checking the locks failed; retrying")
        try:
            # Read first: on SQLite a write session takes the database's
            # write lock, which a sweep with nothing to do should not.
            with db.session_scope(app, write=False) as session:
                lost = lifecycle.has_lost_runs(session)
            if lost:
                with db.session_scope(app) as session:
                    lifecycle.sweep_lost(session)
        except Exception:
            log.exception("sweeping this process's runs failed; retrying")


def _check_locks(app: Flask, state: Running) -> None:
    """Hold the liveness lock; schedule exactly while holding the scheduler lock."""
    liveness = lifecycle.liveness_lock(get_runner(app).instance_id)
    if not state.locks.holds(liveness):
        log.warning("this process lost its liveness lock; taking it again")
        state.locks.try_acquire(liveness)
    if not app.config["SCHEDULER_ENABLED"]:
        return
    jobs = scheduler.get_scheduler(app)
    if not jobs.running:
        _try_lead(app, state)
    elif state.locks.holds(scheduler.LOCK):
        jobs.reconcile()
    else:
        log.warning("this process lost the scheduler lock; it stops scheduling")
        jobs.pause()


def stop(app: Flask, grace: float = 0.0) -> None:
    """Stop in order: scheduler, websockets (told to reconnect), runs, bus, connections.

    Runs get ``grace`` seconds to finish before they are interrupted. Safe to
    call more than once, and on apps that were never started.
    """
    state: Running | None = app.extensions.pop(EXTENSION_KEY, None)
    if state is not None:
        state.stopping.set()
        if state.keeper is not None:
            state.keeper.join(timeout=5)
    scheduler.get_scheduler(app).shutdown()
    closed = get_hub(app).close_all(RESTART_CLOSE_CODE, "server restarting; reconnect")
    if closed:
        log.info("asked %d websocket client(s) to reconnect", closed)
    runner = get_runner(app)
    if runner.shutdown(grace):
        with db.session_scope(app) as session:
            lifecycle.mark_interrupted(session, owner=runner.instance_id)
    events.get_bus(app).close()
    if state is not None:
        state.locks.close()
    db.get_database(app).engine.dispose()
