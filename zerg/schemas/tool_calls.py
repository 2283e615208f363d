"""A run's tool calls as the API returns them, and a person's decision on one."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from zerg.schemas.base import LongText
from zerg.schemas.base import Name
from zerg.schemas.base import Request
from zerg.schemas.base import Response


class ToolCallOut(Response):
    id: int
    run_id: int
    tool_call_id: str = Field(description="The model's own id for the call.")
    round: int
    position: int
    name: str = Field(
        description="The agent's tool entry: a built-in name or `mcp:<server>/<tool>`."
    )
    function: str = Field(description="The function name the model saw.")
    source: str
    arguments: str = Field(description="The JSON text the model wrote, as written.")
    status: str
    result: str | None
    truncated: bool
    error: str | None
    requires_approval: bool
    approval_deadline: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class ToolCallDecision(Request):
    """The optional body of an approval or a rejection."""

    reason: LongText | None = Field(
        default=None, description="Why; a rejection's reason is what the model is told."
    )
    by: Name | None = Field(
        default=None, description="Who decided, as recorded in `decided_by` (default `api`)."
    )
