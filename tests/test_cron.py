"""Crontab expressions mean what crontab means, weekdays included."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import pytest

from zerg.runs import cron

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
