"""What one worker does with one run: begin it, stream the model's reply, finish it.

A worker never holds a session while the model talks: a short
``session_scope`` begins the run (and a second marks its agent running, if
it was not), none is open while it streams (which may take minutes), one
finishes it. The streamed pieces are the only events
published here; everything else is announced by the runs' lifecycle and goes
out after each scope commits. A run whose end and failure both could not be
stored is left to this process's sweep (``lifecycle.sweep_lost``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from flask import Flask
from sqlalchemy.orm import Session

from zerg.db import session_scope
from zerg.providers.base import ProviderError
from zerg.providers.base import Usage
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs import lifecycle
from zerg.runs import pool
from zerg.runs.lifecycle import Execution

log = logging.getLogger(__name__)


def execute(app: Flask, run_id: int, switch: threading.Event) -> None:
    """Execute one queued run; whatever fails, its end is stored, or left to the sweep."""
    execution: Execution | None = None
    try:
        with database_turn(app) as session:
            execution = lifecycle.begin_run(session, run_id)
        if execution is None:
            return
        if not execution.agent_was_running:
            with database_turn(app) as session:
                lifecycle.mark_agent_running(session, execution)
        stream(app, execution, switch)
        with database_turn(app) as session:
            lifecycle.finish_run(session, execution)
    except Exception:
        log.exception("run %s failed unexpectedly", run_id)
        try:
            with database_turn(app) as session:
                lifecycle.fail_run(session, run_id, "internal error while running", execution)
        except Exception:
            # The database is away: once this worker is done, the run is no
            # longer held, and this process's sweep ends it when it is back.
            log.exception("could not record the failure of run %s; the sweep will", run_id)


@contextmanager
def database_turn(app: Flask) -> Iterator[Session]:
    """A unit of work of a run, on one of the connections runs may hold at once."""
    with pool.get_runner(app).database_turn(), session_scope(app) as session:
        yield session


def stream(app: Flask, execution: Execution, switch: threading.Event) -> None:
    """Relay the model's deltas, coalesced, until it ends, fails or is stopped."""
    coalesce = app.config["STREAM_COALESCE_SECONDS"]
    pending: list[str] = []
    last_flush = 0.0

    def flush() -> None:
        nonlocal last_flush
        if pending:
            chunk = events.stream_event(
                EventType.STREAM_CHUNK,
                execution.thread_id,
                execution.run_id,
                content="".join(pending),
            )
            events.publish(chunk, app)
            pending.clear()
        last_flush = time.monotonic()

    reply = execution.provider.stream(execution.model, execution.messages)
    try:
        for item in reply:
            if switch.is_set():
                break
            if isinstance(item, Usage):
                execution.usage = item
                continue
            if not isinstance(item, str):
                continue  # no tools are offered yet: the tool loop takes these
            execution.parts.append(item)
            pending.append(item)
            if time.monotonic() - last_flush >= coalesce:
                flush()
        if switch.is_set():
            if pool.get_runner(app).interrupting:
                execution.status = "interrupted"
                execution.error = "the server shut down before the run finished"
            else:
                execution.status = "cancelled"
        flush()
    except ProviderError as exc:
        execution.status, execution.error = "failed", str(exc)
    except Exception:
        log.exception("provider %s failed on run %s", execution.provider.name, execution.run_id)
        execution.status, execution.error = "failed", "the model provider failed unexpectedly"
    finally:
        # Closing the generator is how a provider learns to hang up.
        reply.close()


def init_app(app: Flask) -> None:
    """Give the app its pool of run workers, executing runs as this module does."""
    pool.init_app(app, partial(execute, app))
