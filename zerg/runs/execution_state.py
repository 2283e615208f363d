"""What a worker carries through a run, from beginning it to finishing it.

:class:`Execution` is read when the run begins (``lifecycle.begin_run``) and
grows as the worker converses with the model: the reply being streamed, the
rounds of tool calls stored, their results waiting to go back to the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sqlalchemy.orm import Session

from zerg.providers.base import ChatOptions
from zerg.providers.base import Provider
from zerg.providers.base import ToolCall
from zerg.providers.base import Usage
from zerg.runs import tool_calls
from zerg.tools.registry import ToolRegistry


@dataclass
class Execution:
    """What a worker carries from beginning a run to finishing it.

    ``messages`` grows as the run goes: each round's assistant message and,
    once every call of the round has one, their results (``answers``, by
    position). ``parts`` are the text of the reply being streamed.
    """

    run_id: int
    thread_id: int
    agent_id: int
    model: str
    provider: Provider
    messages: list[dict[str, Any]]
    answered: list[int]
    started: float
    trigger: str
    registry: ToolRegistry
    options: ChatOptions = field(default_factory=ChatOptions)
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    # Whether begin_run found its agent running already; else mark_agent_running follows.
    agent_was_running: bool = True
    status: str = "success"
    error: str | None = None
    # Rounds of tool calls stored so far; the next reply that calls tools is round + 1.
    round: int = 0
    # Calls to run before the model is asked again (a resumed run's approved ones).
    calls: list[tool_calls.Call] = field(default_factory=list)
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    # The ids of the run's calls so far: a model's ids must be unique within a run.
    call_ids: set[str] = field(default_factory=set)

    def add_usage(self, usage: Usage) -> None:
        """Count a reply's tokens with the run's earlier replies'."""
        if self.usage is None:
            self.usage = usage
            return
        self.usage = Usage(
            *(_add(a, b) for a, b in zip(_counts(self.usage), _counts(usage), strict=True))
        )

    def end_round(self) -> None:
        """Add the round's results, in the order of its calls, to what the model sees next."""
        self.messages += [self.answers[position] for position in sorted(self.answers)]
        self.answers.clear()


def _counts(usage: Usage) -> tuple[int | None, int | None, int | None]:
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens


def _add(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else a + b


def store_round(
    session: Session, execution: Execution, requested: list[ToolCall]
) -> tool_calls.Round:
    """Store a reply that calls tools (:func:`tool_calls.store_round`) and add it to the context.

    The reply's text goes with its calls; the next reply's text starts afresh.
    """
    text = "".join(execution.parts)
    execution.parts.clear()
    stored = tool_calls.store_round(
        session,
        run_id=execution.run_id,
        thread_id=execution.thread_id,
        round_=execution.round,
        text=text,
        requested=requested,
        registry=execution.registry,
    )
    execution.messages.append(stored.message)
    execution.answers.update(stored.answers)
    execution.call_ids.update(call.id for call in requested)
    return stored
