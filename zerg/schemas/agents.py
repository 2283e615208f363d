"""Agents and their messages: what a client sends and what it gets back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StringConstraints

from zerg.schemas.base import MAX_TEXT
from zerg.schemas.base import DocumentMark
from zerg.schemas.base import LongText
from zerg.schemas.base import Name
from zerg.schemas.base import Page
from zerg.schemas.base import Partial
from zerg.schemas.base import Request
from zerg.schemas.base import Response
from zerg.schemas.base import SearchText
from zerg.schemas.base import partial_with
from zerg.schemas.base import whole_float
from zerg.schemas.schedules import Schedule
from zerg.schemas.schedules import TimeZone
from zerg.schemas.tools import APPROVAL_WITHIN_SENT_TOOLS
from zerg.schemas.tools import APPROVAL_WITHIN_TOOLS
from zerg.schemas.tools import ToolEntries

# The most an agent may ask of one reply: above every model's output limit today.
MAX_TOKENS_LIMIT = 1_000_000
Temperature = Annotated[
    float,
    Field(ge=0, le=2, description="Sent to the provider; null leaves the model's default."),
]
MaxTokens = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_TOKENS_LIMIT,
        description="The most tokens one reply may use; null leaves the model's default.",
    ),
    BeforeValidator(whole_float),
]
ApprovalRequired = Annotated[
    ToolEntries,
    Field(description="Entries of `tools` whose every call waits for a person's yes."),
]


# The key OfferedModel sets in the core schema's metadata.
OFFERED_MODEL = "zerg_offered_model"


class OfferedModel(DocumentMark):
    """Marks a model name, so the OpenAPI document lists the models the app's providers offer."""

    key = OFFERED_MODEL


ModelName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    OfferedModel(),
]


# The statuses a client may set: "running" follows the agent's runs (and a
# client may set neither while one of them runs).
SettableAgentStatus = Literal["idle", "error"]


AgentMessageRole = Literal["system", "user", "assistant"]


class AgentQuery(Page):
    q: SearchText | None = None


class AgentCreate(Request):
    model_config = ConfigDict(json_schema_extra=APPROVAL_WITHIN_TOOLS)

    name: Name
    system_instructions: LongText = ""
    task_instructions: LongText = ""
    model: ModelName | None = None
    schedule: Schedule = None
    timezone: TimeZone = "UTC"
    run_on_schedule: bool | None = None
    config: dict[str, Any] | None = None
    tools: ToolEntries = []
    approval_required: ApprovalRequired = []
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None


class AgentUpdate(Partial):
    model_config = ConfigDict(json_schema_extra=partial_with(APPROVAL_WITHIN_SENT_TOOLS))

    NOT_NULL = frozenset(
        {
            "name",
            "system_instructions",
            "task_instructions",
            "model",
            "timezone",
            "run_on_schedule",
            "status",
            "tools",
            "approval_required",
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
    tools: ToolEntries | None = None
    approval_required: ApprovalRequired | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None


class AgentMessageCreate(Request):
    role: AgentMessageRole = "user"
    content: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


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
    tools: list[str] = Field(description="Built-in tool names and `mcp:<server>/<tool>` entries.")
    approval_required: list[str] = Field(
        description="Entries of `tools` whose every call waits for a person's yes."
    )
    temperature: float | None
    max_tokens: int | None
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


class ModelOut(BaseModel):
    id: str
    display_name: str
    provider: str
