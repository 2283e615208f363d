"""The agents resource: /api/agents and /api/agents/{id}/messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.helpers import BEYOND_BIGINT
from tests.helpers import PROBLEM_JSON
from tests.helpers import Rows
from tests.helpers import assert_problem
from tests.helpers import create_agent
from tests.helpers import encode
from tests.helpers import get_agent
from tests.helpers import parse_utc
from tests.helpers import send
from zerg.models import Agent
from zerg.models import AgentMessage
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage

AppFactory = Callable[..., Flask]

AGENT_FIELDS = {
    "id",
    "name",
    "status",
    "system_instructions",
    "task_instructions",
    "model",
    "schedule",
    "timezone",
    "run_on_schedule",
    "config",
    "tools",
    "approval_required",
    "temperature",
    "max_tokens",
    "last_error",
    "created_at",
    "updated_at",
    "next_run_at",
    "last_run_at",
    "last_run_status",
    "consecutive_failures",
}
MESSAGE_FIELDS = {"id", "agent_id", "role", "content", "timestamp"}


def create_message(client: FlaskClient, agent_id: int, **fields: Any) -> dict[str, Any]:
    fields.setdefault("content", "hello")
    response = client.post(f"/api/agents/{agent_id}/messages", json=fields)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


# --- create ------------------------------------------------------------------


def test_create_agent_returns_every_field_with_its_default(client: FlaskClient, rows: Rows) -> None:
    response = client.post("/api/agents", json={"name": "Alice"})

    assert response.status_code == 201
    assert response.mimetype == "application/json"
    agent = response.get_json()
    assert set(agent) == AGENT_FIELDS
    assert agent == {
        "id": 1,
        "name": "Alice",
        "status": "idle",
        "system_instructions": "",
        "task_instructions": "",
        "model": "offline",
        "schedule": None,
        "timezone": "UTC",
        "run_on_schedule": False,
        "config": None,
        "tools": [],
        "approval_required": [],
        "temperature": None,
        "max_tokens": None,
        "last_error": None,
        "created_at": agent["created_at"],
        "updated_at": agent["updated_at"],
        "next_run_at": None,
        "last_run_at": None,
        "last_run_status": None,
        "consecutive_failures": 0,
    }
    assert parse_utc(agent["created_at"]) <= parse_utc(agent["updated_at"])
    assert rows(Agent) == 1


def test_create_agent_stores_every_field_sent(client: FlaskClient) -> None:
    fields = {
        "name": "  Researcher  ",
        "system_instructions": "You are careful.",
        "task_instructions": "Summarise the news.",
        "model": "offline",
        "schedule": "30 6 * * *",
        "run_on_schedule": True,
        "config": {"temperature": 0.2, "tools": ["search"], "nested": {"depth": 2}},
        "tools": ["current_time", "search_threads"],
        "approval_required": ["search_threads"],
        "temperature": 0.7,
        "max_tokens": 512,
    }

    agent = create_agent(client, **fields)

    assert agent["name"] == "Researcher"
    stored = ("system_instructions", "task_instructions", "model", "schedule", "config")
    for field in (*stored, "tools", "approval_required", "temperature", "max_tokens"):
        assert agent[field] == fields[field]
    assert agent["run_on_schedule"] is True
    assert get_agent(client, agent["id"]) == agent


def test_create_agent_accepts_text_at_the_length_limits(client: FlaskClient) -> None:
    agent = create_agent(
        client, name="n" * 255, system_instructions="s" * 100_000, task_instructions="t" * 100_000
    )

    assert get_agent(client, agent["id"]) == agent
    assert len(agent["name"]) == 255
    assert len(agent["system_instructions"]) == len(agent["task_instructions"]) == 100_000


@pytest.mark.parametrize(
    ("fields", "run_on_schedule", "scheduled"),
    [
        pytest.param({}, False, False, id="no-schedule"),
        pytest.param({"schedule": "0 9 * * *"}, True, True, id="schedule"),
        pytest.param(
            {"schedule": "0 9 * * *", "run_on_schedule": False}, False, False, id="schedule-off"
        ),
        pytest.param({"run_on_schedule": True}, True, False, id="on-without-schedule"),
        pytest.param({"schedule": None}, False, False, id="schedule-null"),
    ],
)
def test_run_on_schedule_defaults_to_whether_a_schedule_is_given(
    client: FlaskClient, fields: dict[str, Any], run_on_schedule: bool, scheduled: bool
) -> None:
    agent = create_agent(client, **fields)

    assert agent["run_on_schedule"] is run_on_schedule
    assert (agent["next_run_at"] is not None) is scheduled


def test_next_run_at_is_the_next_fire_time_with_crontab_weekdays(client: FlaskClient) -> None:
    """Crontab counts weekdays from Sunday; APScheduler from Monday. 1 must be Monday."""
    before = datetime.now(UTC)

    agent = create_agent(client, schedule="0 9 * * 1")

    next_run = parse_utc(agent["next_run_at"])
    assert before < next_run <= before + timedelta(days=7)
    assert (next_run.weekday(), next_run.hour, next_run.minute, next_run.second) == (0, 9, 0, 0)


def test_schedule_whitespace_is_normalised(client: FlaskClient) -> None:
    agent = create_agent(client, schedule="  0   9 *\t* 1 ")

    assert agent["schedule"] == "0 9 * * 1"


# --- list ----------------------------------------------------------------------


def test_list_agents_is_empty_at_first(client: FlaskClient) -> None:
    response = client.get("/api/agents")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == []


def test_list_agents_in_creation_order(client: FlaskClient) -> None:
    created = [create_agent(client, name=name) for name in ("c", "a", "b")]

    listed = client.get("/api/agents").get_json()

    assert listed == created
    for agent in listed:
        parse_utc(agent["created_at"])
        parse_utc(agent["updated_at"])


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("", ["a0", "a1", "a2", "a3", "a4"]),
        ("?skip=2", ["a2", "a3", "a4"]),
        ("?limit=2", ["a0", "a1"]),
        ("?skip=1&limit=3", ["a1", "a2", "a3"]),
        ("?skip=4&limit=10", ["a4"]),
        ("?skip=5", []),
        ("?skip=50", []),
    ],
)
def test_list_agents_skip_and_limit(client: FlaskClient, query: str, names: list[str]) -> None:
    for index in range(5):
        create_agent(client, name=f"a{index}")

    response = client.get(f"/api/agents{query}")

    assert response.status_code == 200
    assert [agent["name"] for agent in response.get_json()] == names


def test_list_limit_is_capped_at_max_page_size(make_app: AppFactory) -> None:
    assert make_app().config["MAX_PAGE_SIZE"] == 500
    client = make_app(MAX_PAGE_SIZE=2).test_client()
    for name in ("a", "b", "c"):
        create_agent(client, name=name)

    for query in ("", "?limit=3", "?limit=500"):
        assert [a["name"] for a in client.get(f"/api/agents{query}").get_json()] == ["a", "b"]
    assert [a["name"] for a in client.get("/api/agents?skip=2").get_json()] == ["c"]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?q=digest", ["Morning digest", "DIGEST of the week", "evening Digest"]),
        ("?q=DIGEST&skip=1&limit=1", ["DIGEST of the week"]),
        ("?q=100%25", ["100% sure"]),
        ("?q=a_b", ["a_b"]),
        ("?q=%C3%A9t%C3%A9", ["Rapport d'été"]),
        ("?q=nothing like it", []),
    ],
)
def test_list_agents_finds_names_containing_q(
    client: FlaskClient, query: str, names: list[str]
) -> None:
    for name in (
        "Morning digest",
        "DIGEST of the week",
        "100% sure",
        "100 percent",
        "a_b",
        "axb",
        "evening Digest",
        "Rapport d'été",
    ):
        create_agent(client, name=name)

    response = client.get(f"/api/agents{query}")

    assert response.status_code == 200
    assert [agent["name"] for agent in response.get_json()] == names


@pytest.mark.parametrize(
    ("query", "error_type"),
    [
        ("?q=", "string_too_short"),
        (f"?q={'x' * 256}", "string_too_long"),
        ("?q=a%00b", "string_pattern_mismatch"),
    ],
)
def test_list_agents_refuses_a_bad_q(client: FlaskClient, query: str, error_type: str) -> None:
    create_agent(client, name="Kept")

    response = client.get(f"/api/agents{query}")

    assert_problem(response, 422, ["query", "q"], error_type)
    assert [agent["name"] for agent in client.get("/api/agents").get_json()] == ["Kept"]


@pytest.mark.parametrize("path", ["/api/agents", "/api/agents/"])
def test_collection_answers_with_and_without_trailing_slash(client: FlaskClient, path: str) -> None:
    create_agent(client)

    response = client.get(path)

    assert response.status_code == 200
    assert "Location" not in response.headers
    assert [agent["id"] for agent in response.get_json()] == [1]


def test_create_answers_with_a_trailing_slash(client: FlaskClient) -> None:
    response = client.post("/api/agents/", json={"name": "Slash"})

    assert response.status_code == 201
    assert response.get_json()["name"] == "Slash"


# --- get -------------------------------------------------------------------------


def test_get_agent(client: FlaskClient) -> None:
    create_agent(client, name="first")
    second = create_agent(client, name="second", schedule="0 0 * * *")

    response = client.get(f"/api/agents/{second['id']}")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == second
    parse_utc(second["next_run_at"])


# --- update ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_changes_only_the_fields_sent(client: FlaskClient, method: str) -> None:
    before = create_agent(
        client,
        name="Before",
        system_instructions="sys",
        task_instructions="task",
        schedule="0 9 1 1 *",
        config={"k": "v"},
    )

    response = client.open(f"/api/agents/{before['id']}", method=method, json={"name": "After"})

    assert response.status_code == 200
    after = response.get_json()
    assert after["name"] == "After"
    unchanged = AGENT_FIELDS - {"name", "updated_at", "next_run_at"}
    assert {field: after[field] for field in unchanged} == {
        field: before[field] for field in unchanged
    }
    assert after["next_run_at"] is not None
    assert parse_utc(after["updated_at"]) > parse_utc(before["updated_at"])
    assert get_agent(client, before["id"]) == after


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_every_field(client: FlaskClient, method: str) -> None:
    agent = create_agent(client)
    changes = {
        "name": "Renamed",
        "system_instructions": "new system",
        "task_instructions": "new task",
        "model": "offline",
        "schedule": "15 3 * * 0",
        "run_on_schedule": True,
        "config": {"mode": "fast"},
        "status": "error",
        "tools": ["http_get"],
        "approval_required": ["http_get"],
        "temperature": 2,
        "max_tokens": 1,
    }

    response = client.open(f"/api/agents/{agent['id']}", method=method, json=changes)

    assert response.status_code == 200
    updated = response.get_json()
    assert {field: updated[field] for field in changes} == changes
    next_run = parse_utc(updated["next_run_at"])
    assert (next_run.weekday(), next_run.hour, next_run.minute) == (6, 3, 15)  # Sunday
    assert get_agent(client, agent["id"]) == updated


def test_update_with_an_empty_object_changes_nothing(client: FlaskClient) -> None:
    agent = create_agent(client, config={"k": 1})

    response = client.put(f"/api/agents/{agent['id']}", json={})

    assert response.status_code == 200
    assert response.get_json() == agent
    assert get_agent(client, agent["id"]) == agent


@pytest.mark.parametrize("run_on_schedule", [True, False])
def test_put_that_omits_run_on_schedule_leaves_it(
    client: FlaskClient, run_on_schedule: bool
) -> None:
    agent = create_agent(client, schedule="0 9 * * *", run_on_schedule=run_on_schedule)

    updated = client.put(f"/api/agents/{agent['id']}", json={"name": "Renamed"}).get_json()

    assert updated["run_on_schedule"] is run_on_schedule
    assert (updated["next_run_at"] is not None) is run_on_schedule
    assert get_agent(client, agent["id"]) == updated


def test_put_schedule_null_clears_schedule_and_next_run_at(client: FlaskClient) -> None:
    agent = create_agent(client, schedule="0 9 * * *")
    assert agent["next_run_at"] is not None

    response = client.put(f"/api/agents/{agent['id']}", json={"schedule": None})

    assert response.status_code == 200
    updated = response.get_json()
    assert updated["schedule"] is None
    assert updated["next_run_at"] is None
    assert updated["run_on_schedule"] is True
    assert get_agent(client, agent["id"]) == updated


def test_next_run_at_follows_schedule_and_run_on_schedule(client: FlaskClient) -> None:
    agent_id = create_agent(client)["id"]

    def patch(**fields: Any) -> dict[str, Any]:
        response = client.patch(f"/api/agents/{agent_id}", json=fields)
        assert response.status_code == 200
        body: dict[str, Any] = response.get_json()
        return body

    # Adding a schedule later switches run_on_schedule on, as creating with one does.
    added = patch(schedule="0 12 * * *")
    assert (added["schedule"], added["run_on_schedule"]) == ("0 12 * * *", True)
    assert parse_utc(added["next_run_at"]).hour == 12
    paused = patch(run_on_schedule=False)
    assert paused["next_run_at"] is None
    switched_on = patch(run_on_schedule=True)
    assert parse_utc(switched_on["next_run_at"]).hour == 12
    rescheduled = patch(schedule="0 18 * * *")
    assert parse_utc(rescheduled["next_run_at"]).hour == 18
    switched_off = patch(run_on_schedule=False)
    assert (switched_off["schedule"], switched_off["next_run_at"]) == ("0 18 * * *", None)


def test_put_config_null_clears_config(client: FlaskClient) -> None:
    agent = create_agent(client, config={"k": "v"})

    updated = client.put(f"/api/agents/{agent['id']}", json={"config": None}).get_json()

    assert updated["config"] is None
    assert get_agent(client, agent["id"])["config"] is None


# --- delete ----------------------------------------------------------------------


def test_delete_agent(client: FlaskClient, rows: Rows) -> None:
    agent = create_agent(client)

    response = client.delete(f"/api/agents/{agent['id']}")

    assert response.status_code == 204
    assert response.get_data() == b""
    assert rows(Agent) == 0
    assert_problem(client.get(f"/api/agents/{agent['id']}"), 404)
    assert_problem(client.delete(f"/api/agents/{agent['id']}"), 404)


def test_delete_agent_cascades_to_its_threads_messages_and_runs(
    client: FlaskClient, rows: Rows, db_session: Session
) -> None:
    doomed = create_agent(client, name="doomed")["id"]
    kept = create_agent(client, name="kept")["id"]
    for agent_id in (doomed, doomed, kept):
        thread_id = client.post("/api/threads", json={"agent_id": agent_id}).get_json()["id"]
        for content in ("one", "two"):
            response = client.post(f"/api/threads/{thread_id}/messages", json={"content": content})
            assert response.status_code == 201
        db_session.add(Run(agent_id=agent_id, thread_id=thread_id, trigger="manual"))
        create_message(client, agent_id)
    db_session.commit()
    assert [rows(model) for model in (Agent, Thread, ThreadMessage, AgentMessage, Run)] == [
        2,
        3,
        6,
        3,
        3,
    ]

    assert client.delete(f"/api/agents/{doomed}").status_code == 204

    assert [rows(model) for model in (Agent, Thread, ThreadMessage, AgentMessage, Run)] == [
        1,
        1,
        2,
        1,
        1,
    ]
    assert [t["agent_id"] for t in client.get("/api/threads").get_json()] == [kept]
    assert len(client.get(f"/api/agents/{kept}/messages").get_json()) == 1
    assert_problem(client.get(f"/api/agents/{doomed}/messages"), 404)


# --- agent messages ----------------------------------------------------------------


def test_create_message_defaults_to_the_user_role(client: FlaskClient, rows: Rows) -> None:
    agent_id = create_agent(client)["id"]

    response = client.post(f"/api/agents/{agent_id}/messages", json={"content": "Hi there"})

    assert response.status_code == 201
    assert response.mimetype == "application/json"
    message = response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert message == {
        "id": 1,
        "agent_id": agent_id,
        "role": "user",
        "content": "Hi there",
        "timestamp": message["timestamp"],
    }
    parse_utc(message["timestamp"])
    assert rows(AgentMessage) == 1


@pytest.mark.parametrize("role", ["system", "user", "assistant"])
def test_create_message_with_each_role(client: FlaskClient, role: str) -> None:
    agent_id = create_agent(client)["id"]

    message = create_message(client, agent_id, role=role, content="c" * 100_000)

    assert message["role"] == role
    assert client.get(f"/api/agents/{agent_id}/messages").get_json() == [message]


def test_list_messages_oldest_first_and_only_the_agents_own(client: FlaskClient) -> None:
    agent_id = create_agent(client, name="mine")["id"]
    other_id = create_agent(client, name="other")["id"]
    mine = [create_message(client, agent_id, content=f"m{index}") for index in range(3)]
    create_message(client, other_id, content="not mine")

    response = client.get(f"/api/agents/{agent_id}/messages")

    assert response.status_code == 200
    assert response.get_json() == mine
    assert client.get(f"/api/agents/{create_agent(client)['id']}/messages").get_json() == []


@pytest.mark.parametrize(
    ("query", "contents"),
    [
        ("?skip=1", ["m1", "m2", "m3"]),
        ("?limit=2", ["m0", "m1"]),
        ("?skip=1&limit=2", ["m1", "m2"]),
        ("?skip=9", []),
    ],
)
def test_list_messages_skip_and_limit(client: FlaskClient, query: str, contents: list[str]) -> None:
    agent_id = create_agent(client)["id"]
    for index in range(4):
        create_message(client, agent_id, content=f"m{index}")

    response = client.get(f"/api/agents/{agent_id}/messages{query}")

    assert response.status_code == 200
    assert [message["content"] for message in response.get_json()] == contents


def test_list_messages_limit_is_capped_at_max_page_size(make_app: AppFactory) -> None:
    client = make_app(MAX_PAGE_SIZE=2).test_client()
    agent_id = create_agent(client)["id"]
    for content in ("a", "b", "c"):
        create_message(client, agent_id, content=content)

    response = client.get(f"/api/agents/{agent_id}/messages?limit=100")

    assert [message["content"] for message in response.get_json()] == ["a", "b"]


# --- refusals --------------------------------------------------------------------

TOO_LONG_NAME = "n" * 256
TOO_LONG_TEXT = "t" * 100_001

NOT_JSON_BODIES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"name=Alice", id="form-encoded"),
    pytest.param(b"", id="empty"),
    pytest.param(b"  \n ", id="blank"),
]

SHAPE_REFUSALS = [
    pytest.param(encode([{"name": "a"}]), ["body"], "model_type", id="array"),
    pytest.param(encode("Alice"), ["body"], "model_type", id="string"),
    pytest.param(encode(None), ["body"], "model_type", id="null"),
]

CREATE_REFUSALS = [
    *SHAPE_REFUSALS,
    pytest.param(encode({}), ["body", "name"], "missing", id="no-name"),
    pytest.param(
        encode({"name": "a", "colour": "red"}), ["body", "colour"], "extra_forbidden", id="unknown"
    ),
    pytest.param(
        encode({"name": "a", "status": "running"}),
        ["body", "status"],
        "extra_forbidden",
        id="status",
    ),
    pytest.param(encode({"name": 5}), ["body", "name"], "string_type", id="name-int"),
    pytest.param(encode({"name": None}), ["body", "name"], "string_type", id="name-null"),
    pytest.param(encode({"name": ""}), ["body", "name"], "string_too_short", id="name-empty"),
    pytest.param(encode({"name": " \t "}), ["body", "name"], "string_too_short", id="name-blank"),
    pytest.param(
        encode({"name": TOO_LONG_NAME}), ["body", "name"], "string_too_long", id="name-long"
    ),
    pytest.param(
        encode({"name": "a", "system_instructions": TOO_LONG_TEXT}),
        ["body", "system_instructions"],
        "string_too_long",
        id="system-long",
    ),
    pytest.param(
        encode({"name": "a", "task_instructions": TOO_LONG_TEXT}),
        ["body", "task_instructions"],
        "string_too_long",
        id="task-long",
    ),
    pytest.param(
        encode({"name": "a", "task_instructions": None}),
        ["body", "task_instructions"],
        "string_type",
        id="task-null",
    ),
    pytest.param(
        encode({"name": "a", "run_on_schedule": "yes"}),
        ["body", "run_on_schedule"],
        "bool_type",
        id="run-on-schedule-str",
    ),
    pytest.param(
        encode({"name": "a", "run_on_schedule": 1}),
        ["body", "run_on_schedule"],
        "bool_type",
        id="run-on-schedule-int",
    ),
    pytest.param(
        encode({"name": "a", "config": ["x"]}), ["body", "config"], "dict_type", id="config-list"
    ),
    pytest.param(encode({"name": "a", "schedule": 5}), ["body", "schedule"], "string_type", id="5"),
    pytest.param(
        encode({"name": "a", "schedule": "not a cron"}),
        ["body", "schedule"],
        "value_error",
        id="cron-words",
    ),
    pytest.param(
        encode({"name": "a", "schedule": "61 * * * *"}),
        ["body", "schedule"],
        "value_error",
        id="cron-minute-61",
    ),
    pytest.param(
        encode({"name": "a", "schedule": "* * * *"}),
        ["body", "schedule"],
        "value_error",
        id="cron-four-fields",
    ),
    pytest.param(
        encode({"name": "a", "schedule": "0 9 * * 8"}),
        ["body", "schedule"],
        "value_error",
        id="cron-weekday-8",
    ),
    pytest.param(
        encode({"name": "a", "schedule": ""}), ["body", "schedule"], "value_error", id="cron-empty"
    ),
    pytest.param(
        encode({"name": "a", "schedule": "0 0 31 2 *"}),
        ["body", "schedule"],
        "value_error",
        id="cron-never-fires",
    ),
    pytest.param(
        encode({"name": "a", "model": "gpt-imaginary"}),
        ["body", "model"],
        "unknown_model",
        id="unknown-model",
    ),
    pytest.param(
        encode({"name": "a", "model": ""}), ["body", "model"], "string_too_short", id="model-empty"
    ),
    pytest.param(encode({"name": "a", "model": 4}), ["body", "model"], "string_type", id="model-4"),
]


@pytest.mark.parametrize("body", NOT_JSON_BODIES)
def test_create_agent_refuses_a_body_that_is_not_json(
    client: FlaskClient, rows: Rows, body: bytes
) -> None:
    assert_problem(send(client, "POST", "/api/agents", body), 400)
    assert rows(Agent) == 0


@pytest.mark.parametrize(("body", "loc", "error_type"), CREATE_REFUSALS)
def test_create_agent_refuses_invalid_json(
    client: FlaskClient, rows: Rows, body: bytes, loc: list[Any], error_type: str
) -> None:
    assert_problem(send(client, "POST", "/api/agents", body), 422, loc, error_type)
    assert rows(Agent) == 0


UPDATE_REFUSALS = [
    *SHAPE_REFUSALS,
    pytest.param(encode({"colour": "red"}), ["body", "colour"], "extra_forbidden", id="unknown"),
    pytest.param(encode({"id": 2}), ["body", "id"], "extra_forbidden", id="id"),
    pytest.param(encode({"name": 5}), ["body", "name"], "string_type", id="name-int"),
    pytest.param(encode({"name": "  "}), ["body", "name"], "string_too_short", id="name-blank"),
    pytest.param(
        encode({"name": TOO_LONG_NAME}), ["body", "name"], "string_too_long", id="name-long"
    ),
    pytest.param(
        encode({"task_instructions": TOO_LONG_TEXT}),
        ["body", "task_instructions"],
        "string_too_long",
        id="task-long",
    ),
    pytest.param(
        encode({"run_on_schedule": "yes"}), ["body", "run_on_schedule"], "bool_type", id="ros-str"
    ),
    pytest.param(encode({"status": "asleep"}), ["body", "status"], "literal_error", id="status"),
    # Its runs set it running; a client may not.
    pytest.param(
        encode({"status": "running"}), ["body", "status"], "literal_error", id="status-running"
    ),
    pytest.param(
        encode({"schedule": "61 * * * *"}), ["body", "schedule"], "value_error", id="cron"
    ),
    pytest.param(
        encode({"model": "gpt-imaginary"}), ["body", "model"], "unknown_model", id="unknown-model"
    ),
    *(
        pytest.param(encode({field: None}), ["body", field], "value_error", id=f"{field}-null")
        for field in (
            "name",
            "system_instructions",
            "task_instructions",
            "model",
            "run_on_schedule",
            "status",
        )
    ),
    # A valid change next to an invalid one must not be applied either.
    pytest.param(
        encode({"name": "Changed", "schedule": "0 9 * * 8"}),
        ["body", "schedule"],
        "value_error",
        id="valid-and-bad-cron",
    ),
    pytest.param(
        encode({"name": "Changed", "model": "gpt-imaginary"}),
        ["body", "model"],
        "unknown_model",
        id="valid-and-unknown-model",
    ),
    pytest.param(
        encode({"schedule": None, "colour": "red"}),
        ["body", "colour"],
        "extra_forbidden",
        id="valid-and-unknown",
    ),
]


@pytest.fixture
def scheduled_agent(client: FlaskClient) -> dict[str, Any]:
    return create_agent(client, name="Original", schedule="0 9 * * *", config={"k": "v"})


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("body", NOT_JSON_BODIES)
def test_update_agent_refuses_a_body_that_is_not_json(
    client: FlaskClient, rows: Rows, scheduled_agent: dict[str, Any], method: str, body: bytes
) -> None:
    assert_problem(send(client, method, "/api/agents/1", body), 400)
    assert rows(Agent) == 1
    assert get_agent(client, 1) == scheduled_agent


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize(("body", "loc", "error_type"), UPDATE_REFUSALS)
def test_update_agent_refuses_invalid_json_and_changes_nothing(
    client: FlaskClient,
    rows: Rows,
    scheduled_agent: dict[str, Any],
    method: str,
    body: bytes,
    loc: list[Any],
    error_type: str,
) -> None:
    assert_problem(send(client, method, "/api/agents/1", body), 422, loc, error_type)
    assert rows(Agent) == 1
    assert get_agent(client, 1) == scheduled_agent


MESSAGE_REFUSALS = [
    *SHAPE_REFUSALS,
    pytest.param(encode({}), ["body", "content"], "missing", id="no-content"),
    pytest.param(encode({"content": ""}), ["body", "content"], "string_too_short", id="empty"),
    pytest.param(encode({"content": 5}), ["body", "content"], "string_type", id="content-int"),
    pytest.param(
        encode({"content": TOO_LONG_TEXT}), ["body", "content"], "string_too_long", id="long"
    ),
    pytest.param(
        encode({"content": "x", "role": "tool"}), ["body", "role"], "literal_error", id="tool"
    ),
    pytest.param(
        encode({"content": "x", "role": "boss"}), ["body", "role"], "literal_error", id="boss"
    ),
    pytest.param(
        encode({"content": "x", "role": None}), ["body", "role"], "literal_error", id="role-null"
    ),
    pytest.param(
        encode({"content": "x", "agent_id": 2}),
        ["body", "agent_id"],
        "extra_forbidden",
        id="agent-id",
    ),
]


@pytest.mark.parametrize("body", NOT_JSON_BODIES)
def test_create_message_refuses_a_body_that_is_not_json(
    client: FlaskClient, rows: Rows, body: bytes
) -> None:
    agent_id = create_agent(client)["id"]

    assert_problem(send(client, "POST", f"/api/agents/{agent_id}/messages", body), 400)
    assert rows(AgentMessage) == 0


@pytest.mark.parametrize(("body", "loc", "error_type"), MESSAGE_REFUSALS)
def test_create_message_refuses_invalid_json(
    client: FlaskClient, rows: Rows, body: bytes, loc: list[Any], error_type: str
) -> None:
    agent_id = create_agent(client)["id"]

    response = send(client, "POST", f"/api/agents/{agent_id}/messages", body)

    assert_problem(response, 422, loc, error_type)
    assert rows(AgentMessage) == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/agents/99", None),
        ("PUT", "/api/agents/99", {"name": "x"}),
        ("PATCH", "/api/agents/99", {"name": "x"}),
        ("DELETE", "/api/agents/99", None),
        ("GET", "/api/agents/99/messages", None),
        ("POST", "/api/agents/99/messages", {"content": "x"}),
    ],
)
def test_missing_agent_is_404(
    client: FlaskClient, rows: Rows, method: str, path: str, body: dict[str, Any] | None
) -> None:
    create_agent(client)

    problem = assert_problem(client.open(path, method=method, json=body), 404)

    assert problem["detail"] == "Agent 99 not found"
    assert (rows(Agent), rows(AgentMessage)) == (1, 0)


@pytest.mark.parametrize("path", ["/api/agents/0", "/api/agents/-1", "/api/agents/abc"])
def test_ids_that_are_not_positive_integers_are_404(client: FlaskClient, path: str) -> None:
    create_agent(client)

    assert_problem(client.get(path), 404)


QUERY_REFUSALS = [
    pytest.param("limit=0", ["query", "limit"], "greater_than_equal", id="limit-0"),
    pytest.param("limit=-5", ["query", "limit"], "greater_than_equal", id="limit-negative"),
    pytest.param("limit=abc", ["query", "limit"], "int_parsing", id="limit-abc"),
    pytest.param("limit=", ["query", "limit"], "int_parsing", id="limit-empty"),
    pytest.param("skip=-1", ["query", "skip"], "greater_than_equal", id="skip-negative"),
    pytest.param("skip=1.5", ["query", "skip"], "int_parsing", id="skip-fraction"),
    pytest.param("sort=name", ["query", "sort"], "extra_forbidden", id="unknown"),
]


@pytest.mark.parametrize("path", ["/api/agents", "/api/agents/1/messages"])
@pytest.mark.parametrize(("query", "loc", "error_type"), QUERY_REFUSALS)
def test_list_refuses_bad_query_parameters(
    client: FlaskClient, path: str, query: str, loc: list[Any], error_type: str
) -> None:
    create_agent(client)

    assert_problem(client.get(f"{path}?{query}"), 422, loc, error_type)


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/agents"), ("PUT", "/api/agents/1"), ("POST", "/api/agents/1/messages")],
)
def test_body_over_max_content_length_is_413(
    make_app: AppFactory, rows: Rows, method: str, path: str
) -> None:
    client = make_app(MAX_CONTENT_LENGTH=1024).test_client()
    agent = create_agent(client, name="Small")
    # Valid in every way but its size.
    fields = (
        {"content": "x" * 2048} if path.endswith("/messages") else {"task_instructions": "x" * 2048}
    )
    body = encode(fields)
    assert len(body) > 2048

    assert_problem(send(client, method, path, body), 413)
    assert (rows(Agent), rows(AgentMessage)) == (1, 0)
    assert get_agent(client, agent["id"]) == agent


def test_method_not_allowed_is_a_problem(client: FlaskClient) -> None:
    response = client.delete("/api/agents")

    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


# --- values no supported database can hold ---------------------------------------


@pytest.mark.parametrize(
    "agent_id",
    [
        pytest.param(
            BEYOND_BIGINT,
            id="beyond-bigint",
        ),
        pytest.param(
            2**31,
            id="beyond-int32",
        ),
    ],
)
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"name": "x"}),
        ("DELETE", "", None),
        ("GET", "/messages", None),
        ("POST", "/messages", {"content": "x"}),
    ],
)
def test_out_of_range_agent_id_is_404(
    client: FlaskClient,
    rows: Rows,
    agent_id: int,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    response = client.open(f"/api/agents/{agent_id}{suffix}", method=method, json=body)

    assert_problem(response, 404)
    assert (rows(Agent), rows(AgentMessage)) == (0, 0)


@pytest.mark.parametrize("path", ["/api/agents", "/api/agents/1/messages"])
def test_out_of_range_skip_is_refused(client: FlaskClient, path: str) -> None:
    create_agent(client)

    response = client.get(f"{path}?skip={BEYOND_BIGINT}")

    assert 400 <= response.status_code < 500
    assert response.mimetype == PROBLEM_JSON


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/agents", {"name": "nul\u0000name"}),
        ("/api/agents", {"name": "a", "system_instructions": "nul\u0000"}),
        ("/api/agents", {"name": "a", "config": {"key": "nul\u0000"}}),
        ("/api/agents/1/messages", {"content": "nul\u0000"}),
    ],
)
def test_nul_characters_are_refused_on_every_database(
    client: FlaskClient, rows: Rows, path: str, body: dict[str, Any]
) -> None:
    create_agent(client)

    assert send(client, "POST", path, encode(body)).status_code == 422
    assert (rows(Agent), rows(AgentMessage)) == (1, 0)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"1e400"])
def test_non_finite_numbers_in_config_are_refused(
    client: FlaskClient, rows: Rows, number: bytes
) -> None:
    body = b'{"name": "a", "config": {"n": ' + number + b"}}"

    response = send(client, "POST", "/api/agents", body)

    assert response.status_code in (400, 422)
    assert response.mimetype == PROBLEM_JSON
    assert rows(Agent) == 0


@pytest.mark.parametrize("schedule", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_schedule_that_can_never_fire_is_refused_saying_why(
    client: FlaskClient, rows: Rows, schedule: str
) -> None:
    response = client.post("/api/agents", json={"name": "never", "schedule": schedule})
    body = assert_problem(response, 422, ["body", "schedule"], "value_error")
    assert "never fires" in body["errors"][0]["msg"]
    assert rows(Agent) == 0
    agent = create_agent(client, schedule="0 0 29 2 *")  # leap days do come
    assert agent["next_run_at"] is not None
    response = client.patch(f"/api/agents/{agent['id']}", json={"schedule": schedule})
    assert_problem(response, 422, ["body", "schedule"], "value_error")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("schedule", "61 * * * *", "invalid cron expression: the minute field '61' is not valid"),
        ("timezone", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_validators_message_is_given_as_written(
    client: FlaskClient, rows: Rows, field: str, value: str, message: str
) -> None:
    """pydantic prefixes a validator's ValueError with "Value error, "; clients get the message."""
    response = client.post("/api/agents", json={"name": "a", field: value})
    body = assert_problem(response, 422, ["body", field], "value_error")
    assert body["errors"][0]["msg"].startswith(message)
    assert rows(Agent) == 0


def test_a_schedule_given_later_turns_the_schedule_on_unless_told_otherwise(
    client: FlaskClient,
) -> None:
    """As at creation: an agent given a schedule runs on it; one paused stays paused."""
    agent = create_agent(client)
    assert agent["run_on_schedule"] is False and agent["next_run_at"] is None
    scheduled = client.patch(f"/api/agents/{agent['id']}", json={"schedule": "0 8 * * *"})
    assert scheduled.get_json()["run_on_schedule"] is True
    assert scheduled.get_json()["next_run_at"] is not None

    quiet = create_agent(client, name="quiet")
    body = {"schedule": "0 8 * * *", "run_on_schedule": False}
    kept_off = client.patch(f"/api/agents/{quiet['id']}", json=body).get_json()
    assert kept_off["run_on_schedule"] is False and kept_off["next_run_at"] is None

    # An agent whose schedule was switched off keeps it off when the schedule changes.
    changed = client.patch(f"/api/agents/{quiet['id']}", json={"schedule": "0 9 * * *"})
    assert changed.get_json()["run_on_schedule"] is False
