"""Crontab expressions mean what crontab means, weekdays included."""

from __future__ import annotations

from datetime import UTC
from datetime import date
from datetime import datetime
from datetime import time
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from zerg import cron

# A Wednesday.
START = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def weekdays(expression: str, count: int = 7) -> list[str]:
    """Return the weekday names of the next ``count`` firings after START."""
    trigger = cron.parse(expression)
    names: list[str] = []
    previous = None
    now = START
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        names.append(fire.strftime("%a"))
        previous, now = fire, fire
    return names


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 9 * * 1", ["Mon"]),
        ("0 9 * * 0", ["Sun"]),
        ("0 9 * * 7", ["Sun"]),
        ("0 9 * * sun", ["Sun"]),
        ("0 9 * * 1-5", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 9 * * 5-7", ["Fri", "Sat", "Sun"]),
        ("0 9 * * 0,6", ["Sat", "Sun"]),
        ("0 9 * * */2", ["Sun", "Tue", "Thu", "Sat"]),
        ("0 9 * * mon-fri", ["Mon", "Tue", "Wed", "Thu", "Fri"]),
        ("0 9 * * *", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
    ],
)
def test_weekdays_count_from_sunday(expression: str, expected: list[str]) -> None:
    assert sorted(set(weekdays(expression, 14))) == sorted(expected)


def test_next_fire_time_is_utc() -> None:
    fire = cron.next_fire_time("30 6 * * *", START)
    assert fire == datetime(2026, 11, 26, 6, 30, tzinfo=UTC)


def test_a_monday_schedule_fires_on_monday() -> None:
    # The trap: APScheduler's own from_crontab reads "1" as Tuesday.
    fire = cron.next_fire_time("0 9 * * 1", START)
    assert fire == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert fire.strftime("%A") == "Monday"


@pytest.mark.parametrize(
    "expression",
    [
        "not a cron",
        "* * * *",
        "* * * * * *",
        "61 * * * *",
        "* 25 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "0 9 * * 8",
        "0 9 * * 5-2",
        "0 9 * * */0",
        "0 9 * * funday",
    ],
)
def test_invalid_expressions_are_refused(expression: str) -> None:
    with pytest.raises(cron.CronError):
        cron.parse(expression)


def local_fires(expression: str, timezone: str, day: date) -> list[str]:
    """The fire times (UTC, and local with offset) of one local day, from a frozen clock."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), zone) - timedelta(minutes=1)
    fires = cron.next_fire_times(expression, 50, start.astimezone(UTC), timezone)
    return [
        f"{fire:%H:%M}Z={fire.astimezone(zone):%H:%M%z}"
        for fire in fires
        if fire.astimezone(zone).date() == day
    ]


@pytest.mark.parametrize(
    ("timezone", "spring", "skipped_to", "autumn", "repeated"),
    [
        # Berlin: forward 02:00 -> 03:00, back 03:00 -> 02:00, so 02:30 happens twice.
        ("Europe/Berlin", date(2027, 3, 28), "03:00+0200", date(2027, 10, 31), "30 2 * * *"),
        # New York: forward 02:00 -> 03:00, back 02:00 -> 01:00, so 01:30 happens twice.
        ("America/New_York", date(2027, 3, 14), "03:00-0400", date(2027, 11, 7), "30 1 * * *"),
    ],
)
def test_a_local_time_fires_once_on_the_days_clocks_change(
    timezone: str, spring: date, skipped_to: str, autumn: date, repeated: str
) -> None:
    # 02:30 does not exist on the spring day: it fires once, as the clocks skip past it.
    (fire,) = local_fires("30 2 * * *", timezone, spring)
    assert fire.endswith(f"={skipped_to}")
    # A local time that happens twice on the autumn day fires once, the first time.
    assert len(local_fires(repeated, timezone, autumn)) == 1
    # The days around them fire once at the local time, whatever the offset.
    for day in (spring - timedelta(days=1), spring + timedelta(days=1), autumn + timedelta(days=1)):
        (fire,) = local_fires("30 2 * * *", timezone, day)
        assert fire.split("=")[1].startswith("02:30")


def test_a_schedule_in_a_zone_fires_at_its_local_time() -> None:
    winter = datetime(2027, 1, 10, tzinfo=UTC)
    summer = datetime(2027, 7, 10, tzinfo=UTC)
    assert cron.next_fire_time("0 9 * * *", winter, "Europe/Berlin").hour == 8
    assert cron.next_fire_time("0 9 * * *", summer, "Europe/Berlin").hour == 7
    assert cron.next_fire_time("0 9 * * *", summer, "UTC").hour == 9
    assert cron.next_fire_time("0 9 * * *", summer, "America/New_York").hour == 13


@pytest.mark.parametrize(
    ("expression", "says"),
    [("0 0 31 2 *", "never fires"), ("0 0 30 2 *", "never fires"), ("0 0 31 4,6 *", "never")],
)
def test_a_schedule_that_never_fires_is_refused(expression: str, says: str) -> None:
    with pytest.raises(cron.CronError, match=says):
        cron.parse(expression)
    cron.parse("0 0 29 2 *")  # leap days come round


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("61 * * * *", "the minute field '61' is not valid: it takes 0-59"),
        ("0 24 * * *", "the hour field '24' is not valid: it takes 0-23"),
        ("0 0 0 * *", "the day-of-month field '0' is not valid: it takes 1-31"),
        ("0 0 * 13 *", "the month field '13' is not valid: it takes 1-12 or JAN-DEC"),
        ("0 0 * * 8", "the day-of-week field '8' is not valid: it takes 0-7 (0 and 7 are Sunday)"),
        ("*/0 * * * *", "the minute field '*/0' is not valid"),
    ],
)
def test_a_bad_field_is_named_with_what_it_takes(expression: str, says: str) -> None:
    with pytest.raises(cron.CronError) as refused:
        cron.parse(expression)
    assert str(refused.value).startswith(says)
    assert str(refused.value).endswith("a range (1-5), a step (*/10) or *")


def test_unknown_time_zones_are_refused() -> None:
    for name in ("Mars/Olympus_Mons", "", "../etc/passwd", "utc+2"):
        with pytest.raises(cron.CronError, match="unknown time zone"):
            cron.zone(name)
    assert cron.zone("UTC") is UTC


def test_schedules_are_described_in_words() -> None:
    assert cron.describe("0 8 * * 1-5") == "At 08:00, Monday through Friday"
    assert cron.describe("*/15 * * * *") == "Every 15 minutes"
    assert cron.describe("30 2 * * 7") == cron.describe("30 2 * * 0")
