"""Request and response shapes of the HTTP API (pydantic v2).

Requests are strict and closed: a field of the wrong type or one the API does
not know is refused rather than coerced or ignored, so a client's typo shows up
as a 422 instead of silently doing nothing. Responses keep the field names of
the backend zerg replaces.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import cache
from typing import Annotated
from typing import Any
from typing import ClassVar
from typing import Literal
from zoneinfo import available_timezones

from pydantic import AfterValidator
from pydantic import AliasChoices
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StringConstraints
from pydantic import TypeAdapter
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic.json_schema import JsonDict
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from zerg import cron
from zerg.models import ID_MAX

MAX_TEXT = 100_000


def _whole_float(value: Any) -> Any:
    """Take ``5.0`` as ``5``: JSON Schema calls it an integer, so the API does too."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The bounds before the validator: the other way round pydantic's JSON Schema
# says "ge"/"le" instead of "minimum"/"maximum".
Id = Annotated[int, Field(ge=1, le=ID_MAX), BeforeValidator(_whole_float)]

# The whitespace strip_whitespace removes (Unicode White_Space: pydantic-core
# strips in Rust) as a JSON Schema (ECMA) character class; tests/test_schemas.py
# holds it to what pydantic does.
STRIPPED_WHITESPACE = (
    "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# A name is stripped and then must not be empty: the document says "something
# besides whitespace" (and, like all request text, no NUL).
NAME_PATTERN = f"^[^\\u0000]*[^\\u0000{STRIPPED_WHITESPACE}][^\\u0000]*$"
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    Field(json_schema_extra={"pattern": NAME_PATTERN}),
]
LongText = Annotated[str, Field(max_length=MAX_TEXT)]
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# The statuses a client may set: "running" follows the agent's runs (and a
# client may set neither while one of them runs).
SettableAgentStatus = Literal["idle", "error"]
Role = Literal["system", "user", "assistant", "tool"]
AgentMessageRole = Literal["system", "user", "assistant"]
MemoryStrategy = Literal["buffer", "summary", "none"]


def _check_cron(expression: str | None) -> str | None:
    if expression is None:
        return None
    expression = " ".join(expression.split())
    try:
        upcoming = cron.next_fire_time(expression)
    except cron.CronError as exc:
        raise ValueError(f"invalid cron expression: {exc}") from None
    if upcoming is None:
        raise ValueError(f"the cron expression {expression!r} never fires: no date matches it")
    return expression


def _check_zone(name: str) -> str:
    try:
        cron.zone(name)
    except cron.CronError as exc:
        raise ValueError(str(exc)) from None
    return name


# What the OpenAPI document shows of a schedule: the common forms (each field
# "*", "*/n" or a list of numbers), with days of the month up to 28 so that
# every expression it matches fires. The server also takes ranges (1-5) and
# names (mon-fri); a generator that trusts the pattern never meets a refusal.
_MINUTE = "[1-5]?[0-9]"
_HOUR = "1?[0-9]|2[0-3]"
_DAY = "[1-9]|1[0-9]|2[0-8]"
_MONTH = "[1-9]|1[0-2]"
_WEEKDAY = "[0-7]"
CRON_PATTERN = (
    "^"
    + " ".join(
        f"(\\*(/[1-9])?|({value})(,({value}))*)"
        for value in (_MINUTE, _HOUR, _DAY, _MONTH, _WEEKDAY)
    )
    + "$"
)
CRON_DESCRIPTION = (
    "A 5-field crontab expression (day of week 0 and 7 are Sunday), read in a time zone, "
    "that fires at least once."
)

_CRON_FIELD: dict[str, Any] = {
    "max_length": 100,
    "description": CRON_DESCRIPTION,
    "json_schema_extra": {"pattern": CRON_PATTERN},
}
# An agent's schedule (null: none), and a cron expression that must be given.
Schedule = Annotated[str | None, Field(**_CRON_FIELD), AfterValidator(_check_cron)]
CronText = Annotated[str, Field(min_length=1, **_CRON_FIELD), AfterValidator(_check_cron)]
TimeZone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        description="An IANA time zone, such as Europe/Berlin.",
        json_schema_extra={"enum": sorted(available_timezones() | {cron.DEFAULT_ZONE})},
    ),
    AfterValidator(_check_zone),
]


def _storable_problem(value: Any) -> str | None:
    """Say why a parsed JSON value cannot be stored everywhere, or return None.

    PostgreSQL refuses NUL characters in text and JSON, and JSON itself has no
    NaN or Infinity (pydantic's parser accepts them); SQLite would take both,
    so a client's data would work on one database and fail on the other.
    """
    if isinstance(value, str):
        return "text may not contain NUL characters" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
        return next(filter(None, map(_storable_problem, items)), None)
    if isinstance(value, list):
        return next(filter(None, map(_storable_problem, value)), None)
    return None


class Storable(BaseModel):
    """Refuses values that some supported database cannot store."""

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_unstorable(cls, value: Any) -> Any:
        problem = _storable_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Request(Storable):
    """Base of every request body and query: strict types, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Partial(Request):
    """Base of PUT/PATCH bodies: absent fields stay as they are.

    ``null`` is accepted only for nullable columns; subclasses list the rest in
    ``NOT_NULL`` so that ``{"name": null}`` is refused instead of stored.
    """

    NOT_NULL: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_null(cls, value: Any, info: Any) -> Any:
        if value is None and info.field_name in cls.NOT_NULL:
            raise ValueError("may not be null")
        return value

    def changes(self) -> dict[str, Any]:
        """Return only the fields the client sent."""
        return self.model_dump(exclude_unset=True)


class QueryRequest(BaseModel):
    """Base of query-string models: values arrive as text and are converted."""

    model_config = ConfigDict(extra="forbid")


class Page(QueryRequest):
    skip: int = Field(default=0, ge=0, le=ID_MAX)
    limit: int = Field(default=100, ge=1)


# A search term: any text a name or an error could contain (NUL cannot be stored).
SearchText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern="^[^\\u0000]*$",
        description="Keep only items containing this text, ignoring case.",
    ),
]


class AgentQuery(Page):
    q: SearchText | None = None


class SchedulePreviewQuery(QueryRequest):
    cron: CronText = Field(description="A standard 5-field crontab expression.")
    timezone: TimeZone = Field(default="UTC", description="The IANA zone it is read in.")
    count: int = Field(default=5, ge=1, le=50, description="How many fire times to list.")


class ThreadQuery(Page):
    agent_id: Id | None = None


class AgentCreate(Request):
    name: Name
    system_instructions: LongText = ""
    task_instructions: LongText = ""
    model: ModelName | None = None
    schedule: Schedule = None
    timezone: TimeZone = "UTC"
    run_on_schedule: bool | None = None
    config: dict[str, Any] | None = None


class AgentUpdate(Partial):
    NOT_NULL = frozenset(
        {
            "name",
            "system_instructions",
            "task_instructions",
            "model",
            "timezone",
            "run_on_schedule",
            "status",
        }
    )

    name: Name | None = None
    system_instructions: LongText | None = None
    task_instructions: LongText | None = None
    model: ModelName | None = None
    schedule: Schedule = None
    timezone: TimeZone | None = None
    run_on_schedule: bool | None = None
    config: dict[str, Any] | None = None
    status: SettableAgentStatus | None = None


class AgentMessageCreate(Request):
    role: AgentMessageRole = "user"
    content: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


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
        "properties": {"content": {"type": "string", "minLength": 1}},
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


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def serialize(schema: type[BaseModel], obj: object) -> dict[str, Any]:
    """Return an ORM object as the JSON-safe dict its response schema describes."""
    return schema.model_validate(obj).model_dump(mode="json")


@cache
def _row_type(schema: type[BaseModel]) -> Any:
    """The response model's fields as a TypedDict, which pydantic-core serialises from a dict.

    Rows then go straight to JSON in one pass: no model object is built and
    validated per row only to be dumped again. The rows come from our own
    columns, whose types the response models mirror (``tests/test_schemas.py``
    holds them to it).
    """
    fields = {name: field.annotation for name, field in schema.model_fields.items()}
    return TypedDict(f"{schema.__name__}Row", fields)  # type: ignore[operator]


@cache
def row_adapter(schema: type[BaseModel]) -> TypeAdapter[dict[str, Any]]:
    """Serialise one database row as ``schema`` describes it."""
    return TypeAdapter(_row_type(schema))


@cache
def rows_adapter(schema: type[BaseModel]) -> TypeAdapter[list[dict[str, Any]]]:
    """Serialise a list of database rows as ``schema`` describes them."""
    row: Any = _row_type(schema)
    return TypeAdapter(list[row])  # type: ignore[valid-type]


def dump_row(schema: type[BaseModel], row: dict[str, Any]) -> dict[str, Any]:
    """Return one row as the JSON-safe dict ``schema`` describes (an event's payload)."""
    return row_adapter(schema).dump_python(row, mode="json")


class AgentOut(Response):
    id: int
    name: str
    status: str
    system_instructions: str
    task_instructions: str
    model: str
    schedule: str | None
    timezone: str
    run_on_schedule: bool
    config: dict[str, Any] | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_run_status: str | None
    consecutive_failures: int = Field(
        description="Scheduled runs failed in a row; SCHEDULE_MAX_FAILURES pauses the schedule."
    )


class AgentMessageOut(Response):
    id: int
    agent_id: int
    role: str
    content: str
    timestamp: datetime


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
    partial: bool
    timestamp: datetime
    # The ORM attribute is ``meta`` (see zerg.models); rows carry the column's name.
    metadata: dict[str, Any] | None = Field(validation_alias=AliasChoices("meta", "metadata"))


RunStatus = Literal["queued", "running", "success", "failed", "cancelled", "interrupted"]
RunTrigger = Literal["manual", "schedule", "api", "websocket"]
# What a run asked for while its thread has an active run does (see zerg.runs.domain).
MultitaskStrategy = Literal["reject", "enqueue", "interrupt", "rollback"]
# The field as requests take it, described once for REST and the websocket.
StrategyField = Annotated[
    MultitaskStrategy,
    Field(
        description=(
            "If the thread already has an active run: `reject` it (409), `enqueue` this run "
            "to start when the runs before it have ended (FIFO), or stop the active run and "
            "start this one instead, keeping its partial reply (`interrupt`) or removing it "
            "(`rollback`)."
        ),
    ),
]


class ThreadRunCreate(Request):
    """The optional body of a thread run: what to do if the thread is busy."""

    multitask_strategy: StrategyField = "reject"


class RunQuery(Page):
    agent_id: Id | None = None
    thread_id: Id | None = None
    status: RunStatus | None = None
    trigger: RunTrigger | None = None
    q: SearchText | None = Field(
        default=None,
        description="Keep only runs whose agent's name or error contains this, ignoring case.",
    )


class RunOut(Response):
    id: int
    agent_id: int
    thread_id: int | None
    trigger: str
    status: str
    stop_requested: str | None = Field(
        description="Set once a running run is asked to stop, saying why: `cancel`, or "
        "`interrupt` or `rollback`, the multitask strategy of a newer run taking its place."
    )
    scheduled_for: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    error: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    created_at: datetime


class SchedulePreviewOut(BaseModel):
    """When a schedule fires next, and what it means in words."""

    cron: str
    timezone: str
    description: str
    next_runs: list[datetime] = Field(description="The next fire times, in UTC.")


class ModelOut(BaseModel):
    id: str
    display_name: str
    provider: str


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="`degraded` when the database or the event bus does not answer."
    )
    database: Literal["ok", "unavailable"]
    events: Literal["ok", "unavailable"] = Field(
        description="Whether the event bus answers (Redis; the in-memory bus always does). "
        "Events published meanwhile wait for it; this alone never makes the answer 503."
    )
    # Which serving process answered: the id it stamps on the runs it owns.
    instance: str


class WsTicketOut(Response):
    """A websocket ticket: connect to ``/api/ws?ticket=<ticket>`` once, within ``expires_in`` s."""

    ticket: str = Field(description="The secret to pass as `?ticket=` on one handshake.")
    expires_in: int = Field(description="Seconds the ticket stays good for, if unused.")


class ResetOut(BaseModel):
    """What the development-only database reset answers."""

    message: str


class PoolStats(BaseModel):
    checked_out: int
    open: int


class ThreadStats(BaseModel):
    total: int
    by_kind: dict[str, int]


class StatsOut(BaseModel):
    """What the development-only stats route answers."""

    pool: PoolStats
    threads: ThreadStats
    websockets: dict[str, int]
    runs_in_flight: int


def _without_default(schema: dict[str, Any]) -> None:
    """Drop ``"default": null`` from a field whose schema has no null: absent is not null."""
    schema.pop("default", None)


class ProblemItem(BaseModel):
    """One validation failure: where (``["body", "name"]``), what, and its machine-readable kind."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document: the body of every error response.

    ``errors`` is present on validation failures (422) and ``request_id`` on
    unexpected ones (500); both are left out of the schema's ``null`` branch
    because the server omits them rather than sending ``null``.
    """

    type: str = Field(description='Always "about:blank": the status says what kind of error.')
    title: str = Field(description="The status code's standard phrase.")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What went wrong, for a person to read.")
    errors: list[ProblemItem] | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_without_default
    )
    request_id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="On a 500: quote it to find the logged traceback.",
        json_schema_extra=_without_default,
    )


class ValidationProblem(Problem):
    """A 422 problem: ``errors`` lists every failed field."""

    errors: list[ProblemItem]


class ServerProblem(Problem):
    """A 500 problem: no internals, only a request id that the server logged."""

    request_id: str
