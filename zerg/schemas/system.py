"""What the server says of itself: health, websocket tickets, and development stats."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel
from pydantic import Field

from zerg.schemas.base import Response


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
