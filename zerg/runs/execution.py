"""What one worker does with one run: begin it, converse with the model, finish it.

A worker never holds a session while the model talks or a tool runs: a
short ``session_scope`` begins the run (and a second marks its agent
running, if it was not), none is open while it streams (which may take
minutes) or while its tool calls run, one stores each round of calls and
each result, one finishes it. The streamed pieces are the only events
published directly (:mod:`zerg.runs.streaming`); everything else is
announced by the runs' domain and goes out after each scope commits. A run
whose end and failure both could not be stored is left to this process's
sweep (``lifecycle.sweep_lost``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from flask import Flask
from sqlalchemy.orm import Session

from zerg.db import session_scope
from zerg.runs import approvals
from zerg.runs import execution_state
from zerg.runs import lifecycle
from zerg.runs import pool
from zerg.runs import streaming
from zerg.runs import tool_round
from zerg.runs.execution_state import Execution

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
        pool.get_runner(app).begun(run_id)
        if converse(app, execution, switch):
            return
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
    finally:
        if execution is not None:
            execution.registry.close()


@contextmanager
def database_turn(app: Flask) -> Iterator[Session]:
    """A unit of work of a run, on one of the connections runs may hold at once."""
    with pool.get_runner(app).database_turn(), session_scope(app) as session:
        yield session


def converse(app: Flask, execution: Execution, switch: threading.Event) -> bool:
    """Stream the model's replies and run their tool calls until one answers; True if parked.

    Each reply that calls tools is a round: stored with its calls in one
    turn, then its calls run (:func:`tool_round.run_calls`) and their
    results go back to the model, up to ``RUN_MAX_TOOL_ROUNDS``. A round
    with a call that needs a person's approval parks the run
    (:func:`approvals.park`): the worker is done with it, and the run
    begins again, here, once its calls are decided.
    """
    limit = app.config["RUN_MAX_TOOL_ROUNDS"]
    turn = partial(database_turn, app)
    while True:
        tool_round.run_calls(app, execution, execution.calls, switch, turn)
        if execution.status != "success":
            return False
        execution.end_round()
        requested = streaming.stream_reply(app, execution, switch)
        if execution.status != "success" or not requested:
            return False
        if execution.round >= limit:
            execution.status = "failed"
            execution.error = (
                f"the model kept calling tools: it asked for more than {limit} rounds "
                f"of tool calls (RUN_MAX_TOOL_ROUNDS={limit})"
            )
            execution.parts.clear()
            return False
        execution.round += 1
        with database_turn(app) as session:
            stored = execution_state.store_round(session, execution, requested)
            parked = stored.waiting and approvals.park(session, execution.run_id)
        if stored.waiting:
            if not parked:
                execution.status = "cancelled"  # asked to stop: its end says how
            return parked
        execution.calls = stored.runnable


def init_app(app: Flask) -> None:
    """Give the app its pool of run workers, executing runs as this module does."""
    pool.init_app(app, partial(execute, app))
