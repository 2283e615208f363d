"""Runs: the multitask strategy a request may ask for, the run filters, and a run."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from typing import Literal

from pydantic import Field

from zerg.schemas.base import Id
from zerg.schemas.base import Page
from zerg.schemas.base import Request
from zerg.schemas.base import Response
from zerg.schemas.base import SearchText

RunStatus = Literal[
    "queued", "running", "awaiting_approval", "success", "failed", "cancelled", "interrupted"
]
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
    thread_id: int
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
