"""Standard 5-field crontab expressions, evaluated in a time zone.

cronsim evaluates them as Debian's cron does: day of week 0 and 7 are Sunday,
names work, and across a daylight-saving change a local time that does not
exist fires once, when the clocks skip past it, while one that happens twice
fires once, the first time. APScheduler's jobs run on :class:`CronTrigger`, an
APScheduler trigger over cronsim, because APScheduler 3's own cron trigger
counts weekdays from Monday (``from_crontab("0 9 * * 1")`` fires on Tuesdays)
and, on the day the clocks go back, returns the repeated local time forever.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import tzinfo
from functools import cache
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from cron_descriptor import CasingTypeEnum
from cron_descriptor import ExpressionDescriptor
from cron_descriptor import FormatException
from cron_descriptor import Options
from cronsim import CronSim
from cronsim import CronSimError

DEFAULT_ZONE = "UTC"
_TICK = timedelta(microseconds=1)


class CronError(ValueError):
    """The text is not a valid 5-field crontab expression, or names no time zone."""


@cache
def zone(name: str) -> tzinfo:
    """Return the IANA time zone ``name`` (e.g. ``Europe/Berlin``), or raise CronError."""
    if name == DEFAULT_ZONE:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = "use an IANA name such as Europe/Berlin"
        raise CronError(f"unknown time zone {name!r} ({hint})") from None


class CronTrigger(BaseTrigger):  # type: ignore[misc]
    """An APScheduler trigger firing when a crontab expression matches, in a time zone."""

    def __init__(self, expression: str, timezone: str = DEFAULT_ZONE) -> None:
        self.expression = expression
        self.timezone = timezone
        self.zone = zone(timezone)
        fields = expression.split()
        if len(fields) != 5:
            raise CronError(f"a cron expression has 5 fields, not {len(fields)}")
        try:
            CronSim(expression, datetime.now(self.zone))
        except CronSimError as exc:
            raise CronError(_explain(fields, exc)) from None

    def fire_times(self, after: datetime) -> CronSim:
        """Iterate the fire times strictly after ``after`` (aware), in this trigger's zone."""
        return CronSim(self.expression, after.astimezone(self.zone))

    def fire_times_before(self, before: datetime) -> CronSim:
        """Iterate the fire times strictly before ``before``, newest first."""
        return CronSim(self.expression, before.astimezone(self.zone), reverse=True)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """Return the first fire time after the previous one, or at or after ``now``.

        As APScheduler's own triggers do, a job that fell behind gets the
        earliest time it missed, and the scheduler's misfire rules decide.
        """
        start = now - _TICK if previous_fire_time is None else previous_fire_time
        fire: datetime = next(self.fire_times(start))
        return fire

    def __str__(self) -> str:
        return f"cron[{self.expression!r} in {self.timezone}]"

    def __repr__(self) -> str:
        return f"<CronTrigger ({self.expression!r}, timezone={self.timezone!r})>"


# Each field as cronsim names it in its errors ("Bad minute"): its place, and what it takes.
FIELDS = {
    "minute": (0, "0-59"),
    "hour": (1, "0-23"),
    "day-of-month": (2, "1-31"),
    "month": (3, "1-12 or JAN-DEC"),
    "day-of-week": (4, "0-7 (0 and 7 are Sunday) or SUN-SAT"),
}
FORMS = "a number, a list (1,15), a range (1-5), a step (*/10) or *"


def _explain(fields: list[str], error: CronSimError) -> str:
    """Name the field at fault and what it takes, or say that no month has the day asked for.

    Each field is tried alone (the others ``*``): one that fails so is at
    fault; if each is fine alone, the day and the months never meet.
    """
    for name, (place, values) in FIELDS.items():
        alone = ["*"] * 5
        alone[place] = fields[place]
        try:
            CronSim(" ".join(alone), datetime.now(UTC))
        except CronSimError:
            return f"the {name} field {fields[place]!r} is not valid: it takes {values}, as {FORMS}"
    return f"the schedule never fires: no month in {fields[3]!r} has day {fields[2]!r}"


def parse(expression: str, timezone: str = DEFAULT_ZONE) -> CronTrigger:
    """Build a trigger from a standard crontab expression, or raise CronError."""
    return CronTrigger(expression, timezone)


def next_fire_times(
    expression: str, count: int, after: datetime | None = None, timezone: str = DEFAULT_ZONE
) -> list[datetime]:
    """Return the next ``count`` fire times after ``after`` (default: now), in UTC."""
    times = parse(expression, timezone).fire_times(after or datetime.now(UTC))
    return [next(times).astimezone(UTC) for _ in range(count)]


def next_fire_time(
    expression: str, after: datetime | None = None, timezone: str = DEFAULT_ZONE
) -> datetime:
    """Return when the expression next fires after ``after`` (default: now), in UTC."""
    return next_fire_times(expression, 1, after, timezone)[0]


def describe(expression: str) -> str:
    """Say in English when the expression fires (times on a 24-hour clock)."""
    options = Options()
    options.use_24hour_time_format = True
    options.casing_type = CasingTypeEnum.Sentence
    try:
        return str(ExpressionDescriptor(expression, options).get_description())
    except FormatException as exc:
        raise CronError(str(exc)) from None
