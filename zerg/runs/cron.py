"""Standard 5-field crontab expressions on top of APScheduler's cron trigger.

APScheduler 3 numbers weekdays from Monday (0) while crontab numbers them from
Sunday (0 and 7), so ``from_crontab("0 9 * * 1")`` would fire on Tuesdays. The
day-of-week field is therefore rewritten to APScheduler's names before the
trigger is built; every other field means the same in both.
"""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_APS_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CronError(ValueError):
    """The text is not a valid 5-field crontab expression."""


def _day_number(token: str) -> int:
    token = token.strip().lower()
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise CronError(f"day of week {token!r} is not 0-7 or sun-sat")


def _crontab_days(field: str) -> set[int]:
    """Expand a crontab day-of-week field into Sunday-based day numbers."""
    days: set[int] = set()
    for part in field.split(","):
        spec, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"step {step_text!r} in day of week is not a positive number")
            step = int(step_text)
        if spec == "*":
            first, last = 0, 6
        elif "-" in spec:
            low, _, high = spec.partition("-")
            first, last = _day_number(low), _day_number(high)
            # "5-7" ends on Sunday written as 7; keep it after Saturday.
            if high.strip() == "7":
                last = 7
            if first > last:
                raise CronError(f"day-of-week range {spec!r} runs backwards")
        else:
            first = last = _day_number(spec)
            if step_text:
                last = 6
        days.update(day % 7 for day in range(first, last + 1, step))
    return days


def _aps_day_of_week(field: str) -> str:
    if field == "*":
        return "*"
    days = _crontab_days(field)
    return ",".join(_APS_NAMES[(day - 1) % 7] for day in sorted(days, key=lambda d: (d - 1) % 7))


def parse(expression: str) -> CronTrigger:
    """Build a UTC trigger from a standard crontab expression, or raise CronError."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(f"a cron expression has 5 fields, not {len(fields)}")
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_aps_day_of_week(day_of_week),
            timezone=UTC,
        )
    except ValueError as exc:
        raise CronError(str(exc)) from None


def next_fire_time(expression: str, after: datetime | None = None) -> datetime | None:
    """Return when the expression next fires after ``after`` (default: now), in UTC."""
    now = after or datetime.now(UTC)
    fire: datetime | None = parse(expression).get_next_fire_time(None, now)
    return fire.astimezone(UTC) if fire else None
