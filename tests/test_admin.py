"""The reset endpoint exists in development and nowhere else."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import AppFactory
from tests.helpers import wait_for
from zerg.models import Agent
from zerg.runs.pool import get_runner


def test_development_can_reset_the_database(make_app: AppFactory) -> None:
    app = make_app(ENVIRONMENT="development")
    client = app.test_client()
    agent = client.post("/api/agents", json={"name": "doomed"}).get_json()
    client.post("/api/threads", json={"agent_id": agent["id"]})

    response = client.post("/api/admin/reset-database")

    assert response.status_code == 200
    assert "reset" in response.get_json()["message"].lower()
    assert client.get("/api/agents").get_json() == []
    assert client.get("/api/threads").get_json() == []
    # The schema is back and usable.
    assert client.post("/api/agents", json={"name": "fresh"}).status_code == 201


@pytest.mark.parametrize(
    "overrides",
    [{"ENVIRONMENT": "testing"}, {"ENVIRONMENT": "production", "API_TOKEN": "t0ken"}],
)
def test_the_reset_route_is_absent_outside_development(
    make_app: AppFactory, overrides: dict[str, str], rows: Callable[..., int]
) -> None:
    app = make_app(**overrides)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer t0ken"
    assert client.post("/api/agents", json={"name": "survivor"}).status_code == 201

    response = client.post("/api/admin/reset-database")

    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert not any(rule.rule.startswith("/api/admin") for rule in app.url_map.iter_rules())
    assert rows(Agent) == 1


def test_development_reports_pool_threads_websockets_and_runs(make_app: AppFactory) -> None:
    app = make_app(ENVIRONMENT="development", OFFLINE_DELAY_SECONDS=0.001)
    client = app.test_client()
    agent = client.post("/api/agents", json={"name": "a", "task_instructions": "go"}).get_json()
    run = client.post(f"/api/agents/{agent['id']}/run").get_json()
    wait_for(
        lambda: client.get(f"/api/runs/{run['id']}").get_json()["finished_at"] is not None,
        "the run to finish",
    )
    # Its end is visible once committed; its worker gives the connection back just after.
    wait_for(lambda: get_runner(app).in_flight() == 0, "the run's worker to be done")

    stats = client.get("/api/admin/stats")

    assert stats.status_code == 200
    body = stats.get_json()
    # The request reading the stats holds no connection: stats does not use one.
    assert body["pool"]["checked_out"] == 0
    assert body["pool"]["open"] >= 1
    assert body["runs_in_flight"] == 0
    assert body["websockets"] == {"connections": 0, "subscriptions": 0, "topics": 0}
    kinds = body["threads"]["by_kind"]
    assert kinds["MainThread"] == 1
    assert sum(kinds.values()) == body["threads"]["total"]
    assert kinds["zerg-run"] == 1  # the runner's pool keeps the thread that ran it
    assert not any(kind.startswith("zerg-ws-writer") for kind in kinds)


def test_the_stats_route_is_absent_outside_development(make_app: AppFactory) -> None:
    assert make_app(ENVIRONMENT="testing").test_client().get("/api/admin/stats").status_code == 404
