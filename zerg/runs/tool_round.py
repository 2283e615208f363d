"""A round's tool calls, run at once, each result stored as it comes.

The calls of one reply are independent (the model asked for them together),
so they run in parallel, each through the run's registry, which validates its
arguments, enforces its timeout and caps its result: a failing or hanging
tool gives an error result for the model, never an exception for the run.
No session is held while they run; each result is stored in a short
database turn as it arrives, and its frame goes out once that commits. A stop
(cancel, interrupt, shutdown) ends the wait at once: the calls still running
are left to finish on their own, and the run's end answers them
``cancelled``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait
from contextlib import AbstractContextManager

from flask import Flask
from sqlalchemy.orm import Session

from zerg.models import utcnow
from zerg.runs import tool_calls
from zerg.runs.execution_state import Execution
from zerg.runs.streaming import stopped
from zerg.runs.tool_calls import Call
from zerg.runs.tool_calls import Outcome
from zerg.tools.registry import ToolRegistry
from zerg.tools.registry import ToolResult

# How often a worker waiting on its calls looks at its stop switch.
SWITCH_POLL_SECONDS = 0.05

Turn = Callable[[], AbstractContextManager[Session]]

log = logging.getLogger(__name__)


def run_calls(
    app: Flask, execution: Execution, calls: list[Call], switch: threading.Event, turn: Turn
) -> None:
    """Run the calls, store each result and add it to the round's answers.

    Returns when all are stored or the run was stopped (recorded on
    ``execution``). A result whose call the run's end has answered already
    (another process ended the run) fails the run here: its worker must not
    ask the model again.
    """
    if not calls:
        return
    executor = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="zerg-tool-call")
    futures: dict[Future[Outcome], Call] = {
        executor.submit(_run, execution.registry, call): call for call in calls
    }
    waiting = set(futures)
    try:
        while waiting and not switch.is_set():
            done, waiting = wait(waiting, timeout=SWITCH_POLL_SECONDS, return_when=FIRST_COMPLETED)
            if done:
                _store(execution, [(futures[future], future.result()) for future in done], turn)
            if execution.status != "success":
                return
        if waiting:
            stopped(app, execution)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _store(execution: Execution, outcomes: list[tuple[Call, Outcome]], turn: Turn) -> None:
    with turn() as session:
        for call, outcome in outcomes:
            answer = tool_calls.record_result(session, execution.thread_id, call, outcome)
            if answer is None:
                log.warning("run %s: call %s had ended already", execution.run_id, call.id)
                execution.status = "failed"
                execution.error = "the run's tool calls were ended before their results came"
                return
            execution.answers[call.position] = answer


def _run(registry: ToolRegistry, call: Call) -> Outcome:
    """Run one call; whatever happens becomes its outcome."""
    started_at, began = utcnow(), time.monotonic()
    try:
        result = registry.call(call.function, call.arguments)
    except Exception as error:  # noqa: BLE001 - a tool's failure is the model's to read
        log.exception("tool call %s (%s) failed outside the registry", call.id, call.name)
        result = ToolResult.error(f"tool {call.function} failed: {type(error).__name__}")
    duration_ms = int((time.monotonic() - began) * 1000)
    return Outcome(result=result, started_at=started_at, duration_ms=duration_ms)
