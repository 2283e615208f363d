"""The fast lane answers ordinary hot requests before Flask, and exactly as Flask would."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask
from flask import request
from flask.testing import FlaskClient

from tests.conftest import REDIS_URL
from tests.conftest import AppFactory
from tests.helpers import assert_problem
from zerg import db
from zerg import events
from zerg import migrate
from zerg.api.fastlane import _id
from zerg.models import Agent
from zerg.models import Thread

MAX_BODY = 4096


@pytest.fixture
def apps(make_app: AppFactory) -> tuple[Flask, Flask]:
    """The same database behind two apps: fast lane on, and off."""
    lane = make_app(FAST_LANE=True, MAX_CONTENT_LENGTH=MAX_BODY)
    flask_only = make_app(FAST_LANE=False, MAX_CONTENT_LENGTH=MAX_BODY)
    return lane, flask_only


def _dispatches(app: Flask) -> list[str]:
    """Record every request that reaches Flask's dispatch."""
    seen: list[str] = []
    app.before_request(lambda: seen.append(f"{request.method} {request.path}"))
    return seen


def _seed_without_events(app: Flask) -> tuple[int, int]:
    """An agent and a thread written straight to the database (no event is published)."""
    with db.session_scope(app) as session:
        agent = Agent(name="a", model="offline")
        session.add(agent)
        session.flush()
        thread = Thread(agent_id=agent.id, title="t")
        session.add(thread)
        session.flush()
        return agent.id, thread.id


def _seed(client: FlaskClient) -> tuple[int, int]:
    agent = client.post("/api/agents", json={"name": "a", "config": {"k": [1, 2]}}).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    return agent["id"], thread["id"]


def test_ordinary_requests_never_reach_flask(app: Flask) -> None:
    seen = _dispatches(app)
    client = app.test_client()
    agent_id, thread_id = _seed(client)
    seen.clear()
    published: list[events.Event] = []
    events.get_bus(app).subscribe(published.append)

    health = client.get("/api/health")
    agent = client.get(f"/api/agents/{agent_id}")
    message = client.post(f"/api/threads/{thread_id}/messages", json={"content": "hi"})

    assert seen == []
    assert (health.status_code, agent.status_code, message.status_code) == (200, 200, 201)
    assert agent.get_json()["config"] == {"k": [1, 2]}
    assert [event.data for event in published] == [message.get_json()]
    stored = client.get(f"/api/threads/{thread_id}/messages").get_json()
    assert stored == [message.get_json()]
    assert db.get_database(app).engine.pool.checkedout() == 0


def _comparable(response: Any) -> tuple[int, str, Any]:
    body = response.get_json(silent=True)
    if isinstance(body, dict):
        # Two writes differ only in what the database assigns.
        body = {
            k: v for k, v in body.items() if k not in ("id", "timestamp", "request_id", "instance")
        }
    return response.status_code, response.mimetype, body


GETS = [
    "/api/agents/{agent}",
    "/api/agents/{agent}/",
    "/api/agents/{agent}?unused=1",
    "/api/agents/0{agent}",
    "/api/agents/999999",
    "/api/agents/99999999999999999999",
    "/api/agents/\u0661",
    "/api/agents/-1",
    "/api/health",
    "/api/health/",
]


@pytest.mark.parametrize("path", GETS)
def test_gets_are_answered_alike(apps: tuple[Flask, Flask], path: str) -> None:
    lane, flask_only = apps
    agent_id, _ = _seed(lane.test_client())
    url = path.format(agent=agent_id)

    answered = lane.test_client().get(url)
    expected = flask_only.test_client().get(url)

    assert _comparable(answered) == _comparable(expected)


POSTS: list[tuple[str, dict[str, Any]]] = [
    ("valid", {"json": {"content": "hello", "role": "user"}}),
    ("tool message", {"json": {"content": "r", "role": "tool", "tool_call_id": "c1"}}),
    ("not JSON", {"data": "{nope", "content_type": "application/json"}),
    ("empty", {"data": "", "content_type": "application/json"}),
    ("invalid", {"json": {"content": "", "role": "wizard"}}),
    ("unknown field", {"json": {"content": "x", "colour": "red"}}),
    ("too large", {"json": {"content": "x" * MAX_BODY}}),
    ("a list", {"json": ["content"]}),
]


@pytest.mark.parametrize(("name", "request_kwargs"), POSTS, ids=[name for name, _ in POSTS])
def test_message_posts_are_answered_alike(
    apps: tuple[Flask, Flask], name: str, request_kwargs: dict[str, Any]
) -> None:
    lane, flask_only = apps
    _, thread_id = _seed(lane.test_client())
    url = f"/api/threads/{thread_id}/messages"

    answered = lane.test_client().post(url, **request_kwargs)
    expected = flask_only.test_client().post(url, **request_kwargs)

    assert _comparable(answered) == _comparable(expected)
    written = 2 if expected.status_code == 201 else 0
    assert len(lane.test_client().get(url).get_json()) == written


@pytest.mark.parametrize("thread", ["999999", "0{thread}", "99999999999999999999"])
def test_posts_to_threads_that_are_not_there_are_answered_alike(
    apps: tuple[Flask, Flask], thread: str
) -> None:
    lane, flask_only = apps
    _, thread_id = _seed(lane.test_client())
    url = f"/api/threads/{thread.format(thread=thread_id)}/messages"

    answered = lane.test_client().post(url, json={"content": "lost?"})
    expected = flask_only.test_client().post(url, json={"content": "lost?"})

    assert _comparable(answered) == _comparable(expected)
    assert answered.status_code in (404, 201)


def test_a_token_is_checked_and_a_wrong_one_left_to_flask(make_app: AppFactory) -> None:
    app = make_app(API_TOKEN="s3cret")
    seen = _dispatches(app)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer s3cret"
    agent_id, thread_id = _seed(client)
    seen.clear()
    anonymous = app.test_client()

    assert client.get(f"/api/agents/{agent_id}").status_code == 200
    assert (
        client.post(f"/api/threads/{thread_id}/messages", json={"content": "x"}).status_code == 201
    )
    assert seen == []
    assert_problem(anonymous.get(f"/api/agents/{agent_id}"), 401)
    wrong = {"Authorization": "Bearer s3cre"}
    assert_problem(anonymous.post(f"/api/threads/{thread_id}/messages", headers=wrong), 401)
    assert anonymous.get("/api/health").status_code == 200


def test_with_cors_on_a_browser_request_goes_to_flask_for_its_headers(
    make_app: AppFactory,
) -> None:
    app = make_app(CORS_ORIGINS="https://app.example")
    seen = _dispatches(app)
    client = app.test_client()
    agent_id, _ = _seed(client)
    seen.clear()

    browser = client.get(f"/api/agents/{agent_id}", headers={"Origin": "https://app.example"})
    plain = client.get(f"/api/agents/{agent_id}")

    assert browser.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in plain.headers
    assert browser.get_json() == plain.get_json()
    assert seen == [f"GET /api/agents/{agent_id}"]


def test_a_database_error_in_the_lane_is_left_to_flask(app: Flask) -> None:
    """Without tables both paths fail; Flask answers with its 500 problem and request id."""
    client = app.test_client()
    agent_id, thread_id = _seed(client)
    migrate.downgrade(app, "base")

    for response in (
        client.get(f"/api/agents/{agent_id}"),
        client.post(f"/api/threads/{thread_id}/messages", json={"content": "x"}),
    ):
        body = assert_problem(response, 500)
        assert response.headers["X-Request-ID"] == body["request_id"]
    assert db.get_database(app).engine.pool.checkedout() == 0
    migrate.upgrade(app)  # for the fixture's own teardown


@pytest.mark.parametrize(
    ("segment", "ident"),
    [("1", 1), ("42", 42), ("01", None), ("0", None), ("", None), ("\u0661", None),
     ("1e3", None), ("-1", None), ("9223372036854775807", None), ("9" * 30, None)],
)  # fmt: skip
def test_only_one_spelling_of_an_id_is_read(segment: str, ident: int | None) -> None:
    assert _id(segment) == ident


@pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "flask"])
def test_a_failure_after_the_commit_is_answered_with_a_500_problem(
    make_app: AppFactory, redis_stream: str, fast_lane: bool
) -> None:
    """The message is written, its event cannot be published: both paths say so alike.

    The bus's stream key is turned into a plain string, so Redis refuses the
    XADD that announces the message: a real failure after the commit.
    """
    app = make_app(
        FAST_LANE=fast_lane,
        EVENT_BACKEND="redis",
        REDIS_URL=REDIS_URL,
        EVENT_STREAM=redis_stream,
    )
    client = app.test_client()
    _, thread_id = _seed_without_events(app)
    broken = redis.Redis.from_url(REDIS_URL)
    broken.set(redis_stream, "not a stream")
    try:
        response = client.post(f"/api/threads/{thread_id}/messages", json={"content": "x"})
    finally:
        broken.delete(redis_stream)
        broken.close()

    body = assert_problem(response, 500)
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert [m["content"] for m in client.get(f"/api/threads/{thread_id}/messages").get_json()] == [
        "x"
    ]
    assert db.get_database(app).engine.pool.checkedout() == 0
