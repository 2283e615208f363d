"""ORM models: agents, threads and messages, runs and tool calls, MCP servers, keys, tickets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy import Boolean
from sqlalchemy import DateTime
from sqlalchemy import Dialect
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Agent",
    "AgentMessage",
    "Base",
    "IdempotencyKey",
    "McpServer",
    "Run",
    "Thread",
    "ThreadMessage",
    "ToolCall",
    "WsTicket",
]

# Ids are 32-bit integer columns; larger numbers can name nothing and would
# overflow PostgreSQL's integer type.
ID_MAX = 2**31 - 1

# Ids are never reused, so a stored id, a bookmark or a subscription never
# comes to name another row: without AUTOINCREMENT, SQLite gives a new row the
# id of the newest one deleted. (PostgreSQL's sequences never go back.)
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Store UTC and always hand back aware UTC datetimes.

    SQLite keeps no offset, so values are stored as naive UTC there and the
    offset is attached again on the way out; PostgreSQL uses timestamptz.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        """On SQLite, read the stored text and attach UTC in one step.

        SQLite hands back the text SQLAlchemy wrote ("2026-12-01 08:46:58.307926");
        its DATETIME type parses that with a regular expression, then
        :meth:`process_result_value` attaches the offset with ``replace``: about
        1.5 us a value, the largest share of reading a page of 100 agents.
        ``fromisoformat`` reads the text with the offset appended in C (0.1 us).
        """
        if dialect.name == "sqlite":
            return _sqlite_utc
        return super().result_processor(dialect, coltype)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_utc(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value + "+00:00")


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for future migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="idle")
    system_instructions: Mapped[str] = mapped_column(Text, default="")
    task_instructions: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(String(100))
    schedule: Mapped[str | None] = mapped_column(String(100))
    # The IANA zone the schedule is read in.
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    run_on_schedule: Mapped[bool] = mapped_column(Boolean, default=False)
    config: Mapped[dict[str, Any] | None]
    # The tools the agent may call: built-in names and "mcp:<server>/<tool>" entries.
    tools: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default="[]")
    # The entries of ``tools`` whose every call waits for a person's yes.
    approval_required: Mapped[list[str]] = mapped_column(
        JSONType, default=list, server_default="[]"
    )
    # Sent to the provider when set; None leaves the model's own default.
    temperature: Mapped[float | None] = mapped_column(Float)
    max_tokens: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    next_run_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    last_run_status: Mapped[str | None] = mapped_column(String(16))
    # Scheduled runs that failed in a row; SCHEDULE_MAX_FAILURES pauses the schedule.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    messages: Mapped[list[AgentMessage]] = relationship(
        back_populates="agent", cascade="all, delete-orphan", passive_deletes=True
    )
    threads: Mapped[list[Thread]] = relationship(
        back_populates="agent", cascade="all, delete-orphan", passive_deletes=True
    )


class AgentMessage(Base):
    __tablename__ = "agent_messages"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)

    agent: Mapped[Agent] = relationship(back_populates="messages")


class Thread(Base):
    __tablename__ = "agent_threads"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(255))
    # "chat" for conversations people start; "manual" and "scheduled" for the
    # threads the agent's own task runs write into.
    thread_type: Mapped[str] = mapped_column(String(16), default="chat")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    agent_state: Mapped[dict[str, Any] | None]
    memory_strategy: Mapped[str] = mapped_column(String(32), default="buffer")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    agent: Mapped[Agent] = relationship(back_populates="threads")
    messages: Mapped[list[ThreadMessage]] = relationship(
        back_populates="thread", cascade="all, delete-orphan", passive_deletes=True
    )


class ThreadMessage(Base):
    __tablename__ = "thread_messages"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(
        ForeignKey("agent_threads.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    tool_call_id: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    processed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The run that wrote it (an assistant reply, a tool result), so that a
    # rolled-back run's messages can be removed together; None for people's.
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )
    # True for an assistant reply cut short by a cancelled run.
    partial: Mapped[bool] = mapped_column(Boolean, default=False)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    # The client's own data about the message, kept and returned as sent. The
    # column is "metadata"; the attribute cannot be, the declarative base owns it.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)

    thread: Mapped[Thread] = relationship(back_populates="messages")


# A run holds its thread while it runs and while it waits for a tool call's approval.
HOLDS_THREAD = "status IN ('running', 'awaiting_approval')"


class Run(Base):
    """One execution of an agent on a thread.

    ``scheduled_for`` is set only for scheduled runs; the unique constraint on
    (agent, scheduled time) is what stops a trigger that fires twice from
    running twice. NULLs never collide, so manual runs are unaffected. A
    thread may have several queued runs (``multitask_strategy=enqueue``),
    which start one after the other; the partial unique index allows one
    running run per thread, whoever races to start one.
    """

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("agent_id", "scheduled_for"),
        Index("ix_runs_status", "status"),
        # Runs are listed newest first: this order exactly.
        Index("ix_runs_created_at", "created_at", "id"),
        Index(
            "uq_runs_running_thread",
            "thread_id",
            unique=True,
            sqlite_where=text(HOLDS_THREAD),
            postgresql_where=text(HOLDS_THREAD),
        ),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    # Every run answers a thread.
    thread_id: Mapped[int] = mapped_column(
        ForeignKey("agent_threads.id", ondelete="CASCADE"), index=True
    )
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    # The process (its runner's instance id) that executes the run; recovery
    # interrupts a run only when that process is gone.
    owner: Mapped[str | None] = mapped_column(String(32))
    # Set when someone asks a running run to stop: "cancel" (a client's cancel)
    # or the multitask strategy of the run taking its place, "interrupt" (keep
    # the partial reply) or "rollback" (drop it). Whichever commits first, the
    # request or the run's end, decides how the run ends.
    stop_requested: Mapped[str | None] = mapped_column(String(16))
    scheduled_for: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    total_tokens: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ToolCall(Base):
    """One call of a tool a model asked for in a run, from its request to its result.

    ``tool_call_id`` is the model's own id for the call (the ``role: "tool"``
    message that answers it names it); ``round`` counts the model's replies
    within the run and ``position`` orders the calls of one reply. ``name``
    is the agent's entry (``current_time``, ``mcp:<server>/<tool>``) and
    ``function`` the name the model saw. ``arguments`` is the JSON text the
    model wrote, kept as written even when it is not valid JSON.
    """

    __tablename__ = "tool_calls"
    __table_args__ = (
        UniqueConstraint("run_id", "tool_call_id"),
        # The approval timeout looks for calls still waiting past their deadline.
        Index("ix_tool_calls_status_deadline", "status", "approval_deadline"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    tool_call_id: Mapped[str] = mapped_column(String(255))
    round: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    function: Mapped[str] = mapped_column(String(64))
    # "builtin" or "mcp:<server>".
    source: Mapped[str] = mapped_column(String(255))
    arguments: Mapped[str] = mapped_column(Text, default="")
    # pending, awaiting_approval, running, success, error, timeout, rejected, cancelled
    status: Mapped[str] = mapped_column(String(20), default="pending")
    result: Mapped[str | None] = mapped_column(Text)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    # Past it, a call still awaiting approval is rejected for the person who did not answer.
    approval_deadline: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]


class McpServer(Base):
    """An MCP server whose tools agents may call, and the tools it last listed.

    ``env`` and ``headers`` hold secrets (API keys, bearer tokens): they are
    stored to be sent to the server and never returned by the API or logged.
    ``tools`` caches the server's list of tools (name, description,
    parameters) as of ``tools_listed_at``; None until first listed.
    """

    __tablename__ = "mcp_servers"
    __table_args__ = (UniqueConstraint("name"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    # "streamable_http" or "stdio".
    transport: Mapped[str] = mapped_column(String(32))
    url: Mapped[str | None] = mapped_column(String(2048))
    command: Mapped[str | None] = mapped_column(String(1024))
    args: Mapped[list[str]] = mapped_column(JSONType, default=list)
    env: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tools: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    tools_listed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IdempotencyKey(Base):
    """A request made with an ``Idempotency-Key``, and the response to replay for it.

    Written in the transaction of the request's own work, so either both are
    committed or neither. ``scope`` is the sha256 of the API token (never the
    token) so that clients with different tokens cannot see each other's
    responses; the unique constraint on (scope, key) decides a race between
    two first requests. ``fingerprint`` is the sha256 of the request's body,
    to tell a retry from a different request that reuses the key.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    # The response's Location header (a 201's new resource), replayed with it.
    location: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The purge job deletes rows past it; a lookup treats them as absent already.
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WsTicket(Base):
    """A websocket ticket not yet used: the sha256 of a short-lived secret, never the secret.

    ``POST /api/ws/tickets`` adds one; the handshake that presents the secret
    deletes its row, and only a handshake whose delete found the row is let
    in, so a ticket opens one connection, whichever process serves it.
    ``scope`` is the sha256 of the token it was issued under.
    """

    __tablename__ = "ws_tickets"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    # Issuing a ticket deletes the rows past it; redeeming treats them as gone.
    expires_at: Mapped[datetime] = mapped_column(index=True)
