"""Schedules: what a cron expression means, before an agent runs on it."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import cron
from zerg.api.io import parse_query
from zerg.api.io import respond
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.schemas import SchedulePreviewOut
from zerg.schemas import SchedulePreviewQuery

bp = Blueprint("schedules", __name__, url_prefix="/schedules")


@bp.get("/preview")
@operation(
    "schedules",
    "Preview a schedule",
    ok(SchedulePreviewOut, "The next fire times and a description."),
    query=SchedulePreviewQuery,
    database=False,
)
def preview() -> Response:
    """List when a schedule would fire next in its time zone, and say it in words."""
    query = parse_query(SchedulePreviewQuery)
    preview = SchedulePreviewOut(
        cron=query.cron,
        timezone=query.timezone,
        description=cron.describe(query.cron),
        next_runs=cron.next_fire_times(query.cron, query.count, timezone=query.timezone),
    )
    return respond(SchedulePreviewOut, preview)
