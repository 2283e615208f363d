"""Threads (conversations with one agent) and their messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import AliasChoices
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic.json_schema import JsonDict
from pydantic_core import PydanticCustomError

from zerg.schemas.base import MAX_TEXT
from zerg.schemas.base import NO_NUL
from zerg.schemas.base import Id
from zerg.schemas.base import Name
from zerg.schemas.base import Page
from zerg.schemas.base import Partial
from zerg.schemas.base import Request
from zerg.schemas.base import Response
from zerg.schemas.runs import RunOut
from zerg.schemas.runs import ThreadRunCreate

Role = Literal["system", "user", "assistant", "tool"]


MemoryStrategy = Literal["buffer", "summary", "none"]


class ThreadQuery(Page):
    agent_id: Id | None = None


class ThreadCreate(Request):
    agent_id: Id
    title: Name = "New thread"
    active: bool = True
    agent_state: dict[str, Any] | None = None
    memory_strategy: MemoryStrategy = "buffer"


class ThreadUpdate(Partial):
    NOT_NULL = frozenset({"title", "active", "memory_strategy"})

    title: Name | None = None
    active: bool | None = None
    agent_state: dict[str, Any] | None = None
    memory_strategy: MemoryStrategy | None = None


# JSON Schema for what ``ThreadMessageCreate._content_or_tool_calls`` checks.
_CONTENT_OR_TOOL_CALLS: JsonDict = {
    "if": {
        "properties": {
            "role": {"const": "assistant"},
            "tool_calls": {"type": "array", "minItems": 1},
        },
        "required": ["role", "tool_calls"],
    },
    "then": {},
    "else": {
        "required": ["content"],
        "properties": {"content": {"type": "string", "minLength": 1, "pattern": NO_NUL}},
    },
}


class ThreadMessageCreate(Request):
    """A message; ``content`` may be empty or null only on an assistant message with tool calls.

    That is the OpenAI message format: a model that calls tools often says
    nothing else. Every other message must say something.
    """

    model_config = ConfigDict(json_schema_extra=_CONTENT_OR_TOOL_CALLS)

    role: Role = "user"
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    metadata: dict[str, Any] | None = Field(
        default=None, description="The client's own data about the message, returned as sent."
    )
    # Last, so that its validator sees role and tool_calls.
    content: Annotated[str | None, Field(max_length=MAX_TEXT, validate_default=True)] = None

    @field_validator("content", mode="after")
    @classmethod
    def _content_or_tool_calls(cls, content: str | None, info: ValidationInfo) -> str:
        if content or (info.data.get("role") == "assistant" and info.data.get("tool_calls")):
            return content or ""
        if content is None:
            raise PydanticCustomError("missing", "Field required")
        raise PydanticCustomError(
            "string_too_short",
            "String should have at least 1 character (only an assistant message with "
            "tool_calls may be empty)",
        )


class ThreadOut(Response):
    id: int
    agent_id: int
    title: str
    thread_type: str
    active: bool
    agent_state: dict[str, Any] | None
    memory_strategy: str
    created_at: datetime
    updated_at: datetime


class ThreadMessageOut(Response):
    id: int
    thread_id: int
    role: str
    content: str
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    name: str | None
    processed: bool
    run_id: int | None = Field(
        description="The run that wrote the message (a reply, a tool call, a tool result); "
        "null for people's messages."
    )
    partial: bool
    timestamp: datetime
    # The ORM attribute is ``meta`` (see zerg.models); rows carry the column's name.
    metadata: dict[str, Any] | None = Field(validation_alias=AliasChoices("meta", "metadata"))


# A run asked for with a message answers a person: the message must be theirs.
_RUN_ANSWERS_A_USER_MESSAGE: JsonDict = {
    "if": {"required": ["run"], "properties": {"run": {"type": "object"}}},
    "then": {"properties": {"role": {"const": "user"}}},
}


class ThreadMessagePost(ThreadMessageCreate):
    """A message for ``POST /api/threads/{id}/messages``: with ``run``, also a run to answer it."""

    model_config = ConfigDict(
        json_schema_extra={"allOf": [_CONTENT_OR_TOOL_CALLS, _RUN_ANSWERS_A_USER_MESSAGE]}
    )

    run: ThreadRunCreate | None = Field(
        default=None,
        description=(
            "Also queue a run of the thread's agent to answer this user message, in the same "
            "transaction. With `reject` and a busy thread no run is queued: the message "
            "waits, and the active run's follow-up answers it."
        ),
    )

    @field_validator("run", mode="after")
    @classmethod
    def _answers_a_user_message(
        cls, run: ThreadRunCreate | None, info: ValidationInfo
    ) -> ThreadRunCreate | None:
        if run is not None and info.data.get("role", "user") != "user":
            raise PydanticCustomError("run_needs_user_message", "a run answers a user message")
        return run


class ThreadMessageSentOut(ThreadMessageOut):
    """The stored message; with ``run`` in the request, the run queued to answer it."""

    run: RunOut | None = Field(
        default=None,
        description=(
            "Present when the request asked for a run: the run queued, or null when the "
            "thread was busy and `multitask_strategy` was `reject` (the active run's "
            "follow-up answers the message)."
        ),
    )
