"""Schedules: cron expressions and time zones, checked as an agent's and previewed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from typing import Any
from zoneinfo import available_timezones

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import Field
from pydantic.json_schema import WithJsonSchema

from zerg import cron
from zerg.schemas.base import QueryRequest


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
# The document lists the zones (WithJsonSchema: an enum says all a pattern could).
TimeZone = Annotated[
    str,
    Field(min_length=1, max_length=64),
    WithJsonSchema(
        {
            "description": "An IANA time zone, such as Europe/Berlin.",
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "enum": sorted(available_timezones() | {cron.DEFAULT_ZONE}),
        }
    ),
    AfterValidator(_check_zone),
]


class SchedulePreviewQuery(QueryRequest):
    cron: CronText = Field(description="A standard 5-field crontab expression.")
    timezone: TimeZone = Field(default="UTC", description="The IANA zone it is read in.")
    count: int = Field(default=5, ge=1, le=50, description="How many fire times to list.")


class SchedulePreviewOut(BaseModel):
    """When a schedule fires next, and what it means in words."""

    cron: str
    timezone: str
    description: str
    next_runs: list[datetime] = Field(description="The next fire times, in UTC.")
