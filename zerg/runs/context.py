"""What a run sends its model: the thread as Chat Completions messages, and its options.

Read when the run begins, in the transaction that marks it running; from
then on the worker adds each round's tool calls and results to it in memory,
so a run's model never sees a message that arrived after the run began (the
run's follow-up answers it).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from zerg import conversations
from zerg.models import Agent
from zerg.providers.base import ChatOptions
from zerg.tools.registry import ToolRegistry


def build_context(
    session: Session,
    agent: Agent,
    thread_id: int,
    limit: int,
    *,
    until: datetime | None = None,
    open_calls: Collection[str] = (),
) -> tuple[list[dict[str, Any]], list[int]]:
    """Return the messages to send the model and the ids of the messages they answer.

    When the thread is longer than ``limit`` the newest messages are kept:
    the model must see what it is answering. The unanswered ones are read
    first: under PostgreSQL's READ COMMITTED each statement sees the newest
    commits, so a message that lands in between is then in the context but
    not marked answered (a follow-up run answers it), rather than marked
    answered without the model having seen it. ``until`` and ``open_calls``
    are a resumed run's: it answers the messages it began with, and is about
    to add the results of its approved calls.
    """
    answered = conversations.unanswered(session, thread_id, until=until)
    newest = conversations.context_messages(
        session, thread_id, limit, until=until, open_calls=open_calls
    )
    messages: list[dict[str, Any]] = [{"role": "system", "content": agent.system_instructions}]
    if not agent.system_instructions.strip():
        messages = []
    return messages + newest, answered


def chat_options(agent: Agent, registry: ToolRegistry) -> ChatOptions:
    """The tools the agent may call, and its sampling settings."""
    return ChatOptions(
        tools=tuple(registry.specs()),
        temperature=agent.temperature,
        max_tokens=agent.max_tokens,
    )
