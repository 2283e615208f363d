"""Threads and their messages (/api/threads), plus /api/models and /api/health."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask import Response
from flask import request
from flask.testing import FlaskClient

from tests import helpers
from tests.helpers import BEYOND_BIGINT
from tests.helpers import PROBLEM_JSON
from tests.helpers import Rows
from tests.helpers import assert_problem
from tests.helpers import encode
from tests.helpers import parse_utc
from tests.helpers import send
from zerg import create_app
from zerg import db
from zerg.models import Agent
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.runs.pool import get_runner

AppFactory = Callable[..., Flask]

THREAD_FIELDS = {
    "id",
    "agent_id",
    "title",
    "thread_type",
    "active",
    "agent_state",
    "memory_strategy",
    "created_at",
    "updated_at",
}
MESSAGE_FIELDS = {
    "partial",
    "metadata",
    "id",
    "thread_id",
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "name",
    "processed",
    "run_id",
    "timestamp",
}


def create_agent(client: FlaskClient, name: str = "Agent") -> int:
    return int(helpers.create_agent(client, name=name)["id"])


def create_thread(client: FlaskClient, agent_id: int, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/threads", json={"agent_id": agent_id, **fields})
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def get_thread(client: FlaskClient, thread_id: int) -> dict[str, Any]:
    response = client.get(f"/api/threads/{thread_id}")
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def create_message(client: FlaskClient, thread_id: int, **fields: Any) -> dict[str, Any]:
    fields.setdefault("content", "hello")
    response = client.post(f"/api/threads/{thread_id}/messages", json=fields)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


# --- create ------------------------------------------------------------------


def test_create_thread_returns_every_field_with_its_default(
    client: FlaskClient, rows: Rows
) -> None:
    agent_id = create_agent(client)

    response = client.post("/api/threads", json={"agent_id": agent_id})

    assert response.status_code == 201
    assert response.mimetype == "application/json"
    thread = response.get_json()
    assert set(thread) == THREAD_FIELDS
    assert thread == {
        "id": 1,
        "agent_id": agent_id,
        "title": "New thread",
        "thread_type": "chat",
        "active": True,
        "agent_state": None,
        "memory_strategy": "buffer",
        "created_at": thread["created_at"],
        "updated_at": thread["updated_at"],
    }
    assert parse_utc(thread["created_at"]) <= parse_utc(thread["updated_at"])
    assert rows(Thread) == 1


def test_create_thread_stores_every_field_sent(client: FlaskClient) -> None:
    agent_id = create_agent(client)
    fields = {
        "title": "  Planning  ",
        "active": False,
        "agent_state": {"step": 3, "notes": ["a", "b"]},
        "memory_strategy": "summary",
    }

    thread = create_thread(client, agent_id, **fields)

    assert thread["title"] == "Planning"
    assert thread["active"] is False
    assert thread["agent_state"] == fields["agent_state"]
    assert thread["memory_strategy"] == "summary"
    assert get_thread(client, thread["id"]) == thread


@pytest.mark.parametrize("strategy", ["buffer", "summary", "none"])
def test_create_thread_with_each_memory_strategy(client: FlaskClient, strategy: str) -> None:
    thread = create_thread(client, create_agent(client), memory_strategy=strategy)

    assert thread["memory_strategy"] == strategy


def test_create_thread_accepts_a_title_at_the_length_limit(client: FlaskClient) -> None:
    thread = create_thread(client, create_agent(client), title="t" * 255)

    assert get_thread(client, thread["id"])["title"] == "t" * 255


# --- list ----------------------------------------------------------------------


def test_list_threads_is_empty_at_first(client: FlaskClient) -> None:
    response = client.get("/api/threads")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == []


def test_list_threads_in_creation_order(client: FlaskClient) -> None:
    first, second = create_agent(client, "first"), create_agent(client, "second")
    created = [create_thread(client, agent_id) for agent_id in (second, first, second)]

    listed = client.get("/api/threads").get_json()

    assert listed == created
    for thread in listed:
        parse_utc(thread["created_at"])
        parse_utc(thread["updated_at"])


def test_list_threads_filters_by_agent(client: FlaskClient) -> None:
    first, second, idle = (create_agent(client, name) for name in ("first", "second", "idle"))
    threads = [
        create_thread(client, agent_id, title=f"t{i}")
        for i, agent_id in enumerate((first, second, first, second, first))
    ]

    def titles(query: str) -> list[str]:
        response = client.get(f"/api/threads{query}")
        assert response.status_code == 200
        return [thread["title"] for thread in response.get_json()]

    assert titles(f"?agent_id={first}") == ["t0", "t2", "t4"]
    assert titles(f"?agent_id={second}") == ["t1", "t3"]
    assert titles(f"?agent_id={idle}") == []
    assert titles("?agent_id=99") == []
    assert titles(f"?agent_id={first}&skip=1&limit=1") == ["t2"]
    assert titles("") == [thread["title"] for thread in threads]


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ("", ["t0", "t1", "t2", "t3", "t4"]),
        ("?skip=3", ["t3", "t4"]),
        ("?limit=2", ["t0", "t1"]),
        ("?skip=1&limit=2", ["t1", "t2"]),
        ("?skip=5", []),
    ],
)
def test_list_threads_skip_and_limit(client: FlaskClient, query: str, titles: list[str]) -> None:
    agent_id = create_agent(client)
    for index in range(5):
        create_thread(client, agent_id, title=f"t{index}")

    response = client.get(f"/api/threads{query}")

    assert response.status_code == 200
    assert [thread["title"] for thread in response.get_json()] == titles


def test_list_threads_limit_is_capped_at_max_page_size(make_app: AppFactory) -> None:
    client = make_app(MAX_PAGE_SIZE=2).test_client()
    agent_id = create_agent(client)
    for title in ("a", "b", "c"):
        create_thread(client, agent_id, title=title)

    for query in ("", "?limit=3", f"?agent_id={agent_id}&limit=500"):
        assert [t["title"] for t in client.get(f"/api/threads{query}").get_json()] == ["a", "b"]
    assert [t["title"] for t in client.get("/api/threads?skip=2").get_json()] == ["c"]


@pytest.mark.parametrize(
    "path", ["/api/threads", "/api/threads/", "/api/models", "/api/models/", "/api/health/"]
)
def test_collections_answer_with_and_without_trailing_slash(client: FlaskClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert "Location" not in response.headers


# --- get, update, delete ------------------------------------------------------------


def test_get_thread(client: FlaskClient) -> None:
    agent_id = create_agent(client)
    create_thread(client, agent_id)
    second = create_thread(client, agent_id, title="second")

    response = client.get(f"/api/threads/{second['id']}")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == second


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_changes_only_the_fields_sent(client: FlaskClient, method: str) -> None:
    before = create_thread(
        client, create_agent(client), title="Before", agent_state={"k": 1}, memory_strategy="none"
    )

    response = client.open(f"/api/threads/{before['id']}", method=method, json={"title": "After"})

    assert response.status_code == 200
    after = response.get_json()
    assert after["title"] == "After"
    unchanged = THREAD_FIELDS - {"title", "updated_at"}
    assert {field: after[field] for field in unchanged} == {
        field: before[field] for field in unchanged
    }
    assert parse_utc(after["updated_at"]) > parse_utc(before["updated_at"])
    assert get_thread(client, before["id"]) == after


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_update_every_field(client: FlaskClient, method: str) -> None:
    thread = create_thread(client, create_agent(client))
    changes = {
        "title": "Renamed",
        "active": False,
        "agent_state": {"mood": "calm"},
        "memory_strategy": "summary",
    }

    response = client.open(f"/api/threads/{thread['id']}", method=method, json=changes)

    assert response.status_code == 200
    updated = response.get_json()
    assert {field: updated[field] for field in changes} == changes
    assert get_thread(client, thread["id"]) == updated


def test_update_agent_state_null_clears_it(client: FlaskClient) -> None:
    thread = create_thread(client, create_agent(client), agent_state={"k": "v"})

    updated = client.put(f"/api/threads/{thread['id']}", json={"agent_state": None}).get_json()

    assert updated["agent_state"] is None
    assert get_thread(client, thread["id"])["agent_state"] is None


def test_update_with_an_empty_object_changes_nothing(client: FlaskClient) -> None:
    thread = create_thread(client, create_agent(client), agent_state={"k": 1})

    response = client.put(f"/api/threads/{thread['id']}", json={})

    assert response.status_code == 200
    assert response.get_json() == thread
    assert get_thread(client, thread["id"]) == thread


def test_delete_thread_cascades_to_its_messages_only(client: FlaskClient, rows: Rows) -> None:
    agent_id = create_agent(client)
    doomed = create_thread(client, agent_id, title="doomed")["id"]
    kept = create_thread(client, agent_id, title="kept")["id"]
    for thread_id in (doomed, doomed, kept):
        create_message(client, thread_id)

    response = client.delete(f"/api/threads/{doomed}")

    assert response.status_code == 204
    assert response.get_data() == b""
    assert (rows(Agent), rows(Thread), rows(ThreadMessage)) == (1, 1, 1)
    assert_problem(client.get(f"/api/threads/{doomed}"), 404)
    assert_problem(client.get(f"/api/threads/{doomed}/messages"), 404)
    assert_problem(client.delete(f"/api/threads/{doomed}"), 404)
    assert len(client.get(f"/api/threads/{kept}/messages").get_json()) == 1


# --- thread messages ---------------------------------------------------------------


def test_create_message_returns_every_field_with_its_default(
    client: FlaskClient, rows: Rows
) -> None:
    thread_id = create_thread(client, create_agent(client))["id"]

    response = client.post(f"/api/threads/{thread_id}/messages", json={"content": "Hi"})

    assert response.status_code == 201
    assert response.mimetype == "application/json"
    message = response.get_json()
    assert set(message) == MESSAGE_FIELDS
    assert message == {
        "id": 1,
        "thread_id": thread_id,
        "role": "user",
        "content": "Hi",
        "tool_calls": None,
        "tool_call_id": None,
        "name": None,
        "processed": False,
        "run_id": None,
        "partial": False,
        "timestamp": message["timestamp"],
        "metadata": None,
    }
    parse_utc(message["timestamp"])
    assert rows(ThreadMessage) == 1


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
def test_create_message_with_each_role(client: FlaskClient, role: str) -> None:
    thread_id = create_thread(client, create_agent(client))["id"]

    message = create_message(client, thread_id, role=role, content="c" * 100_000)

    assert message["role"] == role
    assert message["processed"] is False
    assert client.get(f"/api/threads/{thread_id}/messages").get_json() == [message]


def test_tool_calls_are_stored_and_returned(client: FlaskClient) -> None:
    thread_id = create_thread(client, create_agent(client))["id"]
    tool_calls = [
        {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{}"}},
        {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}},
    ]

    call = create_message(
        client, thread_id, role="assistant", content="Calling", tool_calls=tool_calls
    )
    result = create_message(
        client, thread_id, role="tool", content="42", tool_call_id="call_2", name="add"
    )

    assert call["tool_calls"] == tool_calls
    assert (result["tool_call_id"], result["name"], result["tool_calls"]) == ("call_2", "add", None)
    assert client.get(f"/api/threads/{thread_id}/messages").get_json() == [call, result]


def test_posting_a_message_updates_the_threads_updated_at(client: FlaskClient) -> None:
    thread = create_thread(client, create_agent(client))

    create_message(client, thread["id"])

    after = get_thread(client, thread["id"])
    assert parse_utc(after["updated_at"]) > parse_utc(thread["updated_at"])
    assert after["created_at"] == thread["created_at"]


def test_list_messages_oldest_first_and_only_the_threads_own(client: FlaskClient) -> None:
    agent_id = create_agent(client)
    thread_id = create_thread(client, agent_id)["id"]
    other_id = create_thread(client, agent_id)["id"]
    mine = [create_message(client, thread_id, content=f"m{index}") for index in range(3)]
    create_message(client, other_id, content="not mine")

    response = client.get(f"/api/threads/{thread_id}/messages")

    assert response.status_code == 200
    assert response.get_json() == mine
    empty_id = create_thread(client, agent_id)["id"]
    assert client.get(f"/api/threads/{empty_id}/messages").get_json() == []


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
    thread_id = create_thread(client, create_agent(client))["id"]
    for index in range(4):
        create_message(client, thread_id, content=f"m{index}")

    response = client.get(f"/api/threads/{thread_id}/messages{query}")

    assert response.status_code == 200
    assert [message["content"] for message in response.get_json()] == contents


def test_list_messages_limit_is_capped_at_max_page_size(make_app: AppFactory) -> None:
    client = make_app(MAX_PAGE_SIZE=2).test_client()
    thread_id = create_thread(client, create_agent(client))["id"]
    for content in ("a", "b", "c"):
        create_message(client, thread_id, content=content)

    response = client.get(f"/api/threads/{thread_id}/messages?limit=100")

    assert [message["content"] for message in response.get_json()] == ["a", "b"]


# --- refusals --------------------------------------------------------------------

TOO_LONG_TITLE = "t" * 256
TOO_LONG_TEXT = "c" * 100_001

NOT_JSON_BODIES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"agent_id=1", id="form-encoded"),
    pytest.param(b"", id="empty"),
    pytest.param(b"  \n ", id="blank"),
]

SHAPE_REFUSALS = [
    pytest.param(encode([{"agent_id": 1}]), ["body"], "model_type", id="array"),
    pytest.param(encode("thread"), ["body"], "model_type", id="string"),
    pytest.param(encode(None), ["body"], "model_type", id="null"),
]

CREATE_REFUSALS = [
    *SHAPE_REFUSALS,
    pytest.param(encode({}), ["body", "agent_id"], "missing", id="no-agent"),
    pytest.param(encode({"agent_id": "1"}), ["body", "agent_id"], "int_type", id="agent-str"),
    pytest.param(encode({"agent_id": True}), ["body", "agent_id"], "int_type", id="agent-bool"),
    pytest.param(encode({"agent_id": 1.5}), ["body", "agent_id"], "int_type", id="agent-float"),
    pytest.param(
        encode({"agent_id": 0}), ["body", "agent_id"], "greater_than_equal", id="agent-zero"
    ),
    pytest.param(encode({"agent_id": None}), ["body", "agent_id"], "int_type", id="agent-null"),
    pytest.param(
        encode({"agent_id": 1, "colour": "red"}),
        ["body", "colour"],
        "extra_forbidden",
        id="unknown",
    ),
    pytest.param(encode({"agent_id": 1, "title": 5}), ["body", "title"], "string_type", id="5"),
    pytest.param(
        encode({"agent_id": 1, "title": ""}), ["body", "title"], "string_too_short", id="empty"
    ),
    pytest.param(
        encode({"agent_id": 1, "title": "   "}), ["body", "title"], "string_too_short", id="blank"
    ),
    pytest.param(
        encode({"agent_id": 1, "title": TOO_LONG_TITLE}),
        ["body", "title"],
        "string_too_long",
        id="title-long",
    ),
    pytest.param(
        encode({"agent_id": 1, "active": "yes"}), ["body", "active"], "bool_type", id="active"
    ),
    pytest.param(
        encode({"agent_id": 1, "agent_state": []}),
        ["body", "agent_state"],
        "dict_type",
        id="state-list",
    ),
    pytest.param(
        encode({"agent_id": 1, "memory_strategy": "forever"}),
        ["body", "memory_strategy"],
        "literal_error",
        id="strategy",
    ),
]


@pytest.mark.parametrize("body", NOT_JSON_BODIES)
def test_create_thread_refuses_a_body_that_is_not_json(
    client: FlaskClient, rows: Rows, body: bytes
) -> None:
    create_agent(client)

    assert_problem(send(client, "POST", "/api/threads", body), 400)
    assert rows(Thread) == 0


@pytest.mark.parametrize(("body", "loc", "error_type"), CREATE_REFUSALS)
def test_create_thread_refuses_invalid_json(
    client: FlaskClient, rows: Rows, body: bytes, loc: list[Any], error_type: str
) -> None:
    create_agent(client)

    assert_problem(send(client, "POST", "/api/threads", body), 422, loc, error_type)
    assert rows(Thread) == 0


def test_create_thread_for_a_missing_agent_is_404(client: FlaskClient, rows: Rows) -> None:
    create_agent(client)

    problem = assert_problem(client.post("/api/threads", json={"agent_id": 99}), 404)

    assert problem["detail"] == "Agent 99 not found"
    assert rows(Thread) == 0


UPDATE_REFUSALS = [
    *SHAPE_REFUSALS,
    pytest.param(encode({"colour": "red"}), ["body", "colour"], "extra_forbidden", id="unknown"),
    # A thread belongs to one agent for good.
    pytest.param(encode({"agent_id": 2}), ["body", "agent_id"], "extra_forbidden", id="agent"),
    pytest.param(encode({"title": 5}), ["body", "title"], "string_type", id="title-int"),
    pytest.param(encode({"title": " "}), ["body", "title"], "string_too_short", id="title-blank"),
    pytest.param(
        encode({"title": TOO_LONG_TITLE}), ["body", "title"], "string_too_long", id="title-long"
    ),
    pytest.param(encode({"active": "no"}), ["body", "active"], "bool_type", id="active-str"),
    pytest.param(
        encode({"memory_strategy": "all"}),
        ["body", "memory_strategy"],
        "literal_error",
        id="strategy",
    ),
    pytest.param(
        encode({"agent_state": "x"}), ["body", "agent_state"], "dict_type", id="state-str"
    ),
    *(
        pytest.param(encode({field: None}), ["body", field], "value_error", id=f"{field}-null")
        for field in ("title", "active", "memory_strategy")
    ),
    # A valid change next to an invalid one must not be applied either.
    pytest.param(
        encode({"title": "Changed", "active": None}),
        ["body", "active"],
        "value_error",
        id="valid-and-null",
    ),
    pytest.param(
        encode({"title": "Changed", "memory_strategy": "all"}),
        ["body", "memory_strategy"],
        "literal_error",
        id="valid-and-bad-strategy",
    ),
]


@pytest.fixture
def thread(client: FlaskClient) -> dict[str, Any]:
    return create_thread(client, create_agent(client), title="Original", agent_state={"k": 1})


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("body", NOT_JSON_BODIES)
def test_update_thread_refuses_a_body_that_is_not_json(
    client: FlaskClient, rows: Rows, thread: dict[str, Any], method: str, body: bytes
) -> None:
    assert_problem(send(client, method, f"/api/threads/{thread['id']}", body), 400)
    assert rows(Thread) == 1
    assert get_thread(client, thread["id"]) == thread


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize(("body", "loc", "error_type"), UPDATE_REFUSALS)
def test_update_thread_refuses_invalid_json_and_changes_nothing(
    client: FlaskClient,
    rows: Rows,
    thread: dict[str, Any],
    method: str,
    body: bytes,
    loc: list[Any],
    error_type: str,
) -> None:
    response = send(client, method, f"/api/threads/{thread['id']}", body)

    assert_problem(response, 422, loc, error_type)
    assert rows(Thread) == 1
    assert get_thread(client, thread["id"]) == thread


MESSAGE_REFUSALS = [
    *SHAPE_REFUSALS,
    pytest.param(encode({}), ["body", "content"], "missing", id="no-content"),
    pytest.param(encode({"content": ""}), ["body", "content"], "string_too_short", id="empty"),
    pytest.param(encode({"content": 5}), ["body", "content"], "string_type", id="content-int"),
    pytest.param(
        encode({"content": TOO_LONG_TEXT}), ["body", "content"], "string_too_long", id="long"
    ),
    pytest.param(
        encode({"content": "x", "role": "boss"}), ["body", "role"], "literal_error", id="role"
    ),
    pytest.param(
        encode({"content": "x", "role": None}), ["body", "role"], "literal_error", id="role-null"
    ),
    pytest.param(
        encode({"content": "x", "tool_calls": {"id": "c"}}),
        ["body", "tool_calls"],
        "list_type",
        id="tool-calls-object",
    ),
    pytest.param(
        encode({"content": "x", "tool_calls": ["c"]}),
        ["body", "tool_calls", 0],
        "dict_type",
        id="tool-calls-strings",
    ),
    pytest.param(
        encode({"content": "x", "tool_call_id": ""}),
        ["body", "tool_call_id"],
        "string_too_short",
        id="tool-call-id-empty",
    ),
    pytest.param(
        encode({"content": "x", "name": "n" * 256}),
        ["body", "name"],
        "string_too_long",
        id="name-long",
    ),
    # Only the runner marks a message processed.
    pytest.param(
        encode({"content": "x", "processed": True}),
        ["body", "processed"],
        "extra_forbidden",
        id="processed",
    ),
    pytest.param(
        encode({"content": "x", "thread_id": 2}),
        ["body", "thread_id"],
        "extra_forbidden",
        id="thread-id",
    ),
]


@pytest.mark.parametrize("body", NOT_JSON_BODIES)
def test_create_message_refuses_a_body_that_is_not_json(
    client: FlaskClient, rows: Rows, thread: dict[str, Any], body: bytes
) -> None:
    assert_problem(send(client, "POST", f"/api/threads/{thread['id']}/messages", body), 400)
    assert rows(ThreadMessage) == 0


@pytest.mark.parametrize(("body", "loc", "error_type"), MESSAGE_REFUSALS)
def test_create_message_refuses_invalid_json_and_leaves_the_thread(
    client: FlaskClient,
    rows: Rows,
    thread: dict[str, Any],
    body: bytes,
    loc: list[Any],
    error_type: str,
) -> None:
    response = send(client, "POST", f"/api/threads/{thread['id']}/messages", body)

    assert_problem(response, 422, loc, error_type)
    assert rows(ThreadMessage) == 0
    assert get_thread(client, thread["id"]) == thread


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/threads/99", None),
        ("PUT", "/api/threads/99", {"title": "x"}),
        ("PATCH", "/api/threads/99", {"title": "x"}),
        ("DELETE", "/api/threads/99", None),
        ("GET", "/api/threads/99/messages", None),
        ("POST", "/api/threads/99/messages", {"content": "x"}),
    ],
)
def test_missing_thread_is_404(
    client: FlaskClient,
    rows: Rows,
    thread: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    problem = assert_problem(client.open(path, method=method, json=body), 404)

    assert problem["detail"] == "Thread 99 not found"
    assert (rows(Thread), rows(ThreadMessage)) == (1, 0)
    assert get_thread(client, thread["id"]) == thread


QUERY_REFUSALS = [
    pytest.param("limit=0", ["query", "limit"], "greater_than_equal", id="limit-0"),
    pytest.param("limit=abc", ["query", "limit"], "int_parsing", id="limit-abc"),
    pytest.param("skip=-1", ["query", "skip"], "greater_than_equal", id="skip-negative"),
    pytest.param("skip=x", ["query", "skip"], "int_parsing", id="skip-x"),
    pytest.param("order=desc", ["query", "order"], "extra_forbidden", id="unknown"),
]

THREAD_QUERY_REFUSALS = [
    pytest.param("agent_id=0", ["query", "agent_id"], "greater_than_equal", id="agent-0"),
    pytest.param("agent_id=abc", ["query", "agent_id"], "int_parsing", id="agent-abc"),
    pytest.param("agent_id=", ["query", "agent_id"], "int_parsing", id="agent-empty"),
]


@pytest.mark.parametrize(("query", "loc", "error_type"), QUERY_REFUSALS + THREAD_QUERY_REFUSALS)
def test_list_threads_refuses_bad_query_parameters(
    client: FlaskClient, thread: dict[str, Any], query: str, loc: list[Any], error_type: str
) -> None:
    assert_problem(client.get(f"/api/threads?{query}"), 422, loc, error_type)


@pytest.mark.parametrize(
    ("query", "loc", "error_type"),
    [
        *QUERY_REFUSALS,
        # The messages list has no agent filter.
        pytest.param("agent_id=1", ["query", "agent_id"], "extra_forbidden", id="agent-id"),
    ],
)
def test_list_messages_refuses_bad_query_parameters(
    client: FlaskClient, thread: dict[str, Any], query: str, loc: list[Any], error_type: str
) -> None:
    response = client.get(f"/api/threads/{thread['id']}/messages?{query}")

    assert_problem(response, 422, loc, error_type)


BIG = "x" * 2048


@pytest.mark.parametrize(
    ("method", "path", "fields"),
    [
        ("POST", "/api/threads", {"agent_id": 1, "agent_state": {"blob": BIG}}),
        ("PUT", "/api/threads/1", {"agent_state": {"blob": BIG}}),
        ("POST", "/api/threads/1/messages", {"content": BIG}),
    ],
)
def test_body_over_max_content_length_is_413(
    make_app: AppFactory, rows: Rows, method: str, path: str, fields: dict[str, Any]
) -> None:
    """Each body is valid in every way but its size."""
    client = make_app(MAX_CONTENT_LENGTH=1024).test_client()
    thread = create_thread(client, create_agent(client))
    body = encode(fields)
    assert len(body) > 2048

    assert_problem(send(client, method, path, body), 413)
    assert (rows(Thread), rows(ThreadMessage)) == (1, 0)
    assert get_thread(client, thread["id"]) == thread


# --- models and health ---------------------------------------------------------------


def test_models_lists_the_offline_model(client: FlaskClient) -> None:
    response = client.get("/api/models")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == [
        {"id": "offline", "display_name": "Offline model (no network)", "provider": "offline"}
    ]


def test_every_listed_model_can_be_given_to_an_agent(client: FlaskClient) -> None:
    for model in client.get("/api/models").get_json():
        response = client.post("/api/agents", json={"name": "a", "model": model["id"]})
        assert response.status_code == 201
        assert response.get_json()["model"] == model["id"]


def test_health_reports_ok(client: FlaskClient) -> None:
    response = client.get("/api/health")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "events": "ok",  # the in-memory bus always answers
        "instance": body["instance"],
    }
    assert body["instance"] == get_runner(client.application).instance_id


def test_every_request_goes_through_flask_and_its_hooks(app: Flask) -> None:
    """No answer bypasses Flask: a hook added later sees the hottest routes too."""
    seen: list[str] = []
    app.before_request(lambda: seen.append(f"{request.method} {request.path}"))

    @app.after_request
    def stamp(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    client = app.test_client()
    agent_id = create_agent(client)
    thread = client.post("/api/threads", json={"agent_id": agent_id}).get_json()
    seen.clear()
    answers = [
        client.get("/api/health"),
        client.head("/api/health"),
        client.get(f"/api/agents/{agent_id}"),
        client.get("/api/agents?limit=100"),
        client.get(f"/api/threads/{thread['id']}/messages"),
        client.post(f"/api/threads/{thread['id']}/messages", json={"content": "hi"}),
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 200, 201]
    assert all(answer.headers["X-Content-Type-Options"] == "nosniff" for answer in answers)
    assert seen == [
        "GET /api/health",
        "HEAD /api/health",
        f"GET /api/agents/{agent_id}",
        "GET /api/agents",
        f"GET /api/threads/{thread['id']}/messages",
        f"POST /api/threads/{thread['id']}/messages",
    ]
    assert type(app).wsgi_app is Flask.wsgi_app and "wsgi_app" not in vars(app)


def test_health_needs_no_token_when_the_api_is_protected(make_app: AppFactory) -> None:
    client = make_app(API_TOKEN="s3cret").test_client()

    assert client.get("/api/health").get_json()["status"] == "ok"
    assert_problem(client.get("/api/models"), 401)


def test_health_is_503_when_the_database_does_not_answer(tmp_path: Path) -> None:
    """An SQLite file whose folder went away (a volume lost) can no longer be opened.

    A folder missing at start-up is refused with the settings, so it goes after.
    """
    volume = tmp_path / "volume"
    volume.mkdir()
    unreachable = volume / "zerg.sqlite"
    app = create_app(
        {
            "ENVIRONMENT": "testing",
            "DATABASE_URL": f"sqlite:///{unreachable}",
            "AUTO_CREATE_TABLES": False,
            "SCHEDULER_ENABLED": False,
            "API_TOKEN": None,
        }
    )
    volume.rmdir()
    try:
        response = app.test_client().get("/api/health")
    finally:
        db.get_database(app).engine.dispose()

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.mimetype == "application/json"
    assert response.get_json()["status"] == "degraded"
    assert response.get_json()["database"] == "unavailable"


# --- values no supported database can hold ---------------------------------------


@pytest.mark.parametrize(
    "thread_id",
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
        ("PATCH", "", {"title": "x"}),
        ("DELETE", "", None),
        ("GET", "/messages", None),
        ("POST", "/messages", {"content": "x"}),
    ],
)
def test_out_of_range_thread_id_is_404(
    client: FlaskClient,
    rows: Rows,
    thread_id: int,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    response = client.open(f"/api/threads/{thread_id}{suffix}", method=method, json=body)

    assert_problem(response, 404)
    assert (rows(Thread), rows(ThreadMessage)) == (0, 0)


def test_out_of_range_agent_id_in_a_new_thread_is_refused(client: FlaskClient, rows: Rows) -> None:
    response = client.post("/api/threads", json={"agent_id": BEYOND_BIGINT})

    assert response.status_code in (404, 422)
    assert response.mimetype == PROBLEM_JSON
    assert rows(Thread) == 0


@pytest.mark.parametrize("query", [f"agent_id={BEYOND_BIGINT}", f"skip={BEYOND_BIGINT}"])
def test_out_of_range_query_values_are_not_a_server_error(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/threads?{query}")

    assert response.status_code < 500


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"content": "nul\u0000"}, id="content"),
        pytest.param({"content": "x", "tool_calls": [{"arguments": "nul\u0000"}]}, id="tool-calls"),
    ],
)
def test_nul_characters_in_messages_are_refused_on_every_database(
    client: FlaskClient, rows: Rows, thread: dict[str, Any], fields: dict[str, Any]
) -> None:
    response = send(client, "POST", f"/api/threads/{thread['id']}/messages", encode(fields))

    assert response.status_code == 422
    assert rows(ThreadMessage) == 0


@pytest.mark.parametrize("content", [None, "", "absent"])
def test_an_assistant_message_with_tool_calls_may_have_empty_content(
    client: FlaskClient, content: str | None
) -> None:
    """As in the OpenAI message format, where a model that calls tools often says nothing."""
    agent = client.post("/api/agents", json={"name": "a"}).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body: dict[str, Any] = {"role": "assistant", "tool_calls": [call]}
    if content != "absent":
        body["content"] = content
    response = client.post(f"/api/threads/{thread['id']}/messages", json=body)
    assert response.status_code == 201, response.get_json()
    message = response.get_json()
    assert (message["content"], message["tool_calls"]) == ("", [call])
    stored = client.get(f"/api/threads/{thread['id']}/messages").get_json()
    assert [m["content"] for m in stored] == [""]


@pytest.mark.parametrize(
    "body",
    [
        {"role": "assistant"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": "", "tool_calls": [{"id": "x"}]},
        {"role": "tool", "tool_calls": [{"id": "x"}]},
        {"content": None},
    ],
)
def test_other_messages_still_need_content(
    client: FlaskClient, rows: Callable[..., int], body: dict[str, Any]
) -> None:
    agent = client.post("/api/agents", json={"name": "a"}).get_json()
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    response = client.post(f"/api/threads/{thread['id']}/messages", json=body)
    error_type = "string_too_short" if body.get("content") == "" else "missing"
    assert_problem(response, 422, ["body", "content"], error_type)
    assert rows(ThreadMessage) == 0


def test_a_message_keeps_the_metadata_it_was_sent_with(client: FlaskClient) -> None:
    thread_id = create_thread(client, create_agent(client))["id"]
    metadata = {"client_id": "abc", "nested": {"list": [1, 2.5, None]}}
    response = client.post(
        f"/api/threads/{thread_id}/messages", json={"content": "Hi", "metadata": metadata}
    )
    assert response.status_code == 201
    assert response.get_json()["metadata"] == metadata
    stored = client.get(f"/api/threads/{thread_id}/messages").get_json()
    assert [message["metadata"] for message in stored] == [metadata]
    refused = client.post(
        f"/api/threads/{thread_id}/messages", json={"content": "Hi", "metadata": ["x"]}
    )
    assert_problem(refused, 422, ["body", "metadata"], "dict_type")
