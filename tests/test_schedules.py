"""GET /api/schedules/preview: the next fire times of a schedule, and what it means."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import pytest
from flask.testing import FlaskClient

from tests.helpers import assert_problem
from tests.helpers import parse_utc
from zerg import cron


def test_preview_lists_the_next_fire_times_in_utc(client: FlaskClient) -> None:
    query = {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "count": "7"}
    response = client.get("/api/schedules/preview", query_string=query)

    assert response.status_code == 200
    body = response.get_json()
    assert body["cron"] == "0 9 * * 1-5"
    assert body["timezone"] == "Europe/Berlin"
    assert body["description"] == "At 09:00, Monday through Friday"
    fires = [parse_utc(value) for value in body["next_runs"]]
    assert len(fires) == 7 and fires == sorted(fires) and fires[0] > datetime.now(UTC)
    assert fires[1:] == cron.next_fire_times("0 9 * * 1-5", 6, fires[0], "Europe/Berlin")
    assert all(fire.astimezone(cron.zone("Europe/Berlin")).hour == 9 for fire in fires)
    assert {fire.astimezone(cron.zone("Europe/Berlin")).strftime("%a") for fire in fires} == {
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
    }


def test_preview_defaults_to_utc_and_five(client: FlaskClient) -> None:
    body = client.get("/api/schedules/preview?cron=*/10+*+*+*+*").get_json()
    assert body["timezone"] == "UTC"
    assert len(body["next_runs"]) == 5
    assert body["description"] == "Every 10 minutes"


@pytest.mark.parametrize(
    ("query", "field", "kind"),
    [
        ("cron=0+0+31+2+*", "cron", "value_error"),
        ("cron=not+a+cron", "cron", "value_error"),
        ("cron=", "cron", "string_too_short"),
        ("", "cron", "missing"),
        ("cron=0+9+*+*+*&timezone=Mars/Olympus", "timezone", "value_error"),
        ("cron=0+9+*+*+*&timezone=", "timezone", "string_too_short"),
        ("cron=0+9+*+*+*&count=0", "count", "greater_than_equal"),
        ("cron=0+9+*+*+*&count=51", "count", "less_than_equal"),
        ("cron=0+9+*+*+*&count=five", "count", "int_parsing"),
        ("cron=0+9+*+*+*&verbose=1", "verbose", "extra_forbidden"),
    ],
)
def test_preview_refuses_a_bad_schedule_zone_or_count(
    client: FlaskClient, query: str, field: str, kind: str
) -> None:
    response = client.get(f"/api/schedules/preview?{query}")
    assert_problem(response, 422, ["query", field], kind)


def test_a_schedule_that_never_fires_says_why(client: FlaskClient) -> None:
    body = client.get("/api/schedules/preview?cron=0+0+31+2+*").get_json()
    assert "never fires" in body["errors"][0]["msg"]
