"""One model reply, streamed to the thread's watchers as it comes: text and tool calls.

The worker holds no session here (this may take minutes). Text pieces go
out as ``stream_chunk`` frames; a tool call as ``tool_call_started`` on its
first piece, then ``tool_call_arguments_delta`` frames as its JSON arguments
grow. Both are coalesced (``STREAM_COALESCE_SECONDS``) and published in the
order the model sent them, directly: no commit stands behind them. What the
reply asked for is returned, whole, for the worker to store.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from itertools import groupby

from flask import Flask

from zerg.providers.base import ProviderError
from zerg.providers.base import ToolCall
from zerg.providers.base import ToolCallAssembler
from zerg.providers.base import ToolCallDelta
from zerg.providers.base import Usage
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs import pool
from zerg.runs.execution_state import Execution

log = logging.getLogger(__name__)


class _Relay:
    """Collects a reply's pieces and publishes them, coalesced, in the order they came.

    A piece is text (key None) or a piece of the arguments of the call at an
    index; consecutive pieces with one key go out as one frame.
    """

    def __init__(self, app: Flask, execution: Execution) -> None:
        self.app = app
        self.execution = execution
        self.coalesce = app.config["STREAM_COALESCE_SECONDS"]
        self.pending: list[tuple[int | None, str]] = []
        self.last_flush = 0.0
        # The id of each call of the reply, by index, from its first piece on.
        self.ids: dict[int, str] = {}

    def text(self, piece: str) -> None:
        self.execution.parts.append(piece)
        self.pending.append((None, piece))
        self._maybe_flush()

    def call(self, delta: ToolCallDelta) -> None:
        if delta.index not in self.ids:
            self.flush()
            self.ids[delta.index] = self._unique_id(delta)
            function = delta.name or ""
            self._publish(
                EventType.TOOL_CALL_STARTED,
                tool_call_id=self.ids[delta.index],
                round=self.execution.round + 1,
                position=delta.index,
                name=self.execution.registry.entry_for(function),
                function=function,
            )
        if delta.arguments:
            self.pending.append((delta.index, delta.arguments))
        self._maybe_flush()

    def flush(self) -> None:
        for key, group in groupby(self.pending, key=lambda piece: piece[0]):
            content = "".join(piece for _key, piece in group)
            if key is None:
                self._publish(EventType.STREAM_CHUNK, content=content)
            else:
                self._publish(
                    EventType.TOOL_CALL_ARGUMENTS_DELTA,
                    tool_call_id=self.ids[key],
                    round=self.execution.round + 1,
                    position=key,
                    arguments=content,
                )
        self.pending.clear()
        self.last_flush = time.monotonic()

    def _maybe_flush(self) -> None:
        if time.monotonic() - self.last_flush >= self.coalesce:
            self.flush()

    def _publish(self, kind: EventType, **fields: object) -> None:
        execution = self.execution
        event = events.stream_event(kind, execution.thread_id, execution.run_id, **fields)
        events.publish(event, self.app)

    def _unique_id(self, delta: ToolCallDelta) -> str:
        """The model's id for the call, made unique within the run (ids are per run)."""
        wanted = delta.id or f"call_{delta.index}"
        taken = set(self.ids.values()) | self.execution.call_ids
        if wanted not in taken:
            return wanted
        return f"{wanted}_{self.execution.round + 1}_{delta.index}"


def stream_reply(app: Flask, execution: Execution, switch: threading.Event) -> list[ToolCall]:
    """Relay one reply until it ends, fails or is stopped; return the tool calls it made.

    A failure or a stop is recorded on ``execution`` (its status and error);
    the calls of a reply that did not end are not returned.
    """
    relay = _Relay(app, execution)
    assembler = ToolCallAssembler()
    reply = execution.provider.stream(execution.model, execution.messages, execution.options)
    try:
        for item in reply:
            if switch.is_set():
                break
            if isinstance(item, Usage):
                execution.add_usage(item)
            elif isinstance(item, ToolCallDelta):
                assembler.add(item)
                relay.call(item)
            else:
                relay.text(item)
        if switch.is_set():
            stopped(app, execution)
        relay.flush()
    except ProviderError as exc:
        execution.status, execution.error = "failed", str(exc)
    except Exception:
        log.exception("provider %s failed on run %s", execution.provider.name, execution.run_id)
        execution.status, execution.error = "failed", "the model provider failed unexpectedly"
    finally:
        # Closing the generator is how a provider learns to hang up.
        reply.close()
    if execution.status != "success":
        return []
    calls = assembler.calls()
    ids = [relay.ids[index] for index in sorted(relay.ids)]
    return [replace(call, id=id_) for call, id_ in zip(calls, ids, strict=True)]


def stopped(app: Flask, execution: Execution) -> None:
    """Record that a run's switch stopped it: a shutdown interrupts it, anything else cancels."""
    if pool.get_runner(app).interrupting:
        execution.status = "interrupted"
        execution.error = "the server shut down before the run finished"
    else:
        execution.status = "cancelled"
