"""Agents' tools: the catalogue, the entries an agent may list, and the registry of a run."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import MCP_SERVER
from tests.helpers import PROBLEM_JSON
from tests.helpers import assert_problem
from tests.helpers import create_agent
from tests.helpers import free_port
from zerg import agent_tools
from zerg import db
from zerg.models import Agent
from zerg.tools.registry import ToolRegistry

AppFactory = Callable[..., Flask]

BUILTIN = {"current_time", "http_get", "search_threads"}


def listed_server(client: FlaskClient, url: str, name: str = "web") -> dict[str, Any]:
    """Add a Streamable HTTP server and list its tools into the cache."""
    response = client.post(
        "/api/mcp-servers", json={"name": name, "transport": "streamable_http", "url": url}
    )
    assert response.status_code == 201, response.get_json()
    server: dict[str, Any] = response.get_json()
    assert client.get(f"/api/mcp-servers/{server['id']}/tools").status_code == 200
    return server


def refused(response: Any, field: str) -> str:
    """Check a 422 with one error at ``body.<field>``; return its message."""
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    (error,) = response.get_json()["errors"]
    assert error["loc"] == ["body", field]
    message: str = error["msg"]
    return message


def conflict(response: Any) -> str:
    """Check a 409 problem; return its detail."""
    body = assert_problem(response, 409)
    detail: str = body["detail"]
    return detail


@contextmanager
def registry(app: Flask, agent_id: int) -> Iterator[ToolRegistry]:
    """The registry a run of the agent would get, built as the run builds it."""
    with db.session_scope(app, write=False) as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None
        tools = agent_tools.registry_for(session, agent)
    try:
        yield tools
    finally:
        tools.close()


# --- the catalogue ------------------------------------------------------------------


def test_the_catalogue_lists_the_builtin_tools(client: FlaskClient) -> None:
    response = client.get("/api/tools")

    assert response.status_code == 200
    tools = response.get_json()
    assert {tool["entry"] for tool in tools} == BUILTIN
    for tool in tools:
        assert tool["name"] == tool["entry"]
        assert tool["source"] == "builtin"
        assert tool["description"]
        assert tool["parameters"]["type"] == "object"


def test_the_catalogue_adds_the_cached_tools_of_enabled_servers(
    client: FlaskClient, mcp_url: str
) -> None:
    server = listed_server(client, mcp_url)
    never_listed = client.post(
        "/api/mcp-servers",
        json={"name": "unlisted", "transport": "streamable_http", "url": "http://x.test/mcp"},
    )
    assert never_listed.status_code == 201

    tools = {tool["entry"]: tool for tool in client.get("/api/tools").get_json()}

    assert {"mcp:web/add", "mcp:web/boom", "mcp:web/slow"} <= tools.keys()
    assert not any(entry.startswith("mcp:unlisted/") for entry in tools)
    add = tools["mcp:web/add"]
    assert (add["name"], add["source"]) == ("mcp__web__add", "mcp:web")
    assert add["parameters"]["required"] == ["a", "b"]

    client.patch(f"/api/mcp-servers/{server['id']}", json={"enabled": False})

    assert {tool["entry"] for tool in client.get("/api/tools").get_json()} == BUILTIN


# --- an agent's tools -------------------------------------------------------------


def test_an_agent_takes_builtin_and_mcp_tools(client: FlaskClient, mcp_url: str) -> None:
    listed_server(client, mcp_url)

    agent = create_agent(
        client,
        tools=["current_time", "mcp:web/add"],
        approval_required=["mcp:web/add"],
        temperature=0.5,
        max_tokens=100,
    )

    assert agent["tools"] == ["current_time", "mcp:web/add"]
    assert agent["approval_required"] == ["mcp:web/add"]
    assert (agent["temperature"], agent["max_tokens"]) == (0.5, 100)
    cleared = client.patch(
        f"/api/agents/{agent['id']}", json={"temperature": None, "max_tokens": None}
    )
    assert (cleared.get_json()["temperature"], cleared.get_json()["max_tokens"]) == (None, None)


@pytest.mark.parametrize(
    ("tools", "words"),
    [
        pytest.param(["clock"], "unknown tool 'clock'", id="unknown-builtin"),
        pytest.param(["mcp:web"], "unknown tool 'mcp:web'", id="no-tool-part"),
        pytest.param(["mcp:nowhere/add"], "no MCP server is named 'nowhere'", id="no-server"),
        pytest.param(["mcp:web/divide"], "did not list a tool 'divide'", id="unknown-mcp-tool"),
        pytest.param(["mcp:unlisted/add"], "have not been listed yet", id="never-listed"),
    ],
)
def test_an_unknown_entry_is_refused_naming_it(
    client: FlaskClient, mcp_url: str, tools: list[str], words: str
) -> None:
    listed_server(client, mcp_url)
    client.post(
        "/api/mcp-servers",
        json={"name": "unlisted", "transport": "streamable_http", "url": "http://x.test/mcp"},
    )
    agent = create_agent(client)

    created = client.post("/api/agents", json={"name": "x", "tools": tools})
    updated = client.patch(f"/api/agents/{agent['id']}", json={"tools": ["current_time", *tools]})

    for response in (created, updated):
        assert words in refused(response, "tools")
    assert len(client.get("/api/agents").get_json()) == 1
    assert client.get(f"/api/agents/{agent['id']}").get_json()["tools"] == []


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        pytest.param({"tools": ["http_get", "http_get"]}, "tools", id="duplicate"),
        pytest.param({"tools": "http_get"}, "tools", id="not-a-list"),
        pytest.param({"tools": [""]}, "tools", id="empty-entry"),
        pytest.param({"tools": ["current_time"] * 129}, "tools", id="too-many"),
        pytest.param({"approval_required": ["http_get"]}, "approval_required", id="not-in-tools"),
        pytest.param({"temperature": 2.5}, "temperature", id="temperature-high"),
        pytest.param({"temperature": -0.1}, "temperature", id="temperature-low"),
        pytest.param({"temperature": "hot"}, "temperature", id="temperature-text"),
        pytest.param({"max_tokens": 0}, "max_tokens", id="max-tokens-zero"),
        pytest.param({"max_tokens": 1_000_001}, "max_tokens", id="max-tokens-huge"),
        pytest.param({"max_tokens": 1.5}, "max_tokens", id="max-tokens-fraction"),
    ],
)
def test_bad_tool_settings_are_refused(
    client: FlaskClient, fields: dict[str, Any], loc: str
) -> None:
    response = client.post("/api/agents", json={"name": "x", **fields})

    assert response.status_code == 422
    assert loc in {error["loc"][1] for error in response.get_json()["errors"]}
    assert client.get("/api/agents").get_json() == []


def test_approval_required_stays_within_the_tools(client: FlaskClient) -> None:
    agent = create_agent(client, tools=["http_get"], approval_required=["http_get"])
    path = f"/api/agents/{agent['id']}"

    dropped = client.patch(path, json={"tools": ["current_time"]})
    stray = client.patch(path, json={"approval_required": ["current_time"]})

    # Against the stored list: a conflict with the agent's state; within one body: invalid.
    assert "'http_get', which is not one of the agent's tools" in conflict(dropped)
    assert "'current_time'" in conflict(stray)
    both_wrong = client.patch(path, json={"tools": [], "approval_required": ["http_get"]})
    assert "'http_get' is not one of the agent's tools" in refused(both_wrong, "approval_required")
    both = client.patch(path, json={"tools": ["current_time"], "approval_required": []})
    assert both.status_code == 200
    assert both.get_json()["tools"] == ["current_time"]


# --- the registry of a run ------------------------------------------------------------


def test_the_registry_holds_the_agents_tools_with_source_and_approval(
    app: Flask, client: FlaskClient, mcp_url: str
) -> None:
    listed_server(client, mcp_url)
    agent = create_agent(
        client,
        tools=["current_time", "mcp:web/add", "mcp:web/boom"],
        approval_required=["mcp:web/add"],
    )

    with registry(app, agent["id"]) as tools:
        names = [spec["function"]["name"] for spec in tools.specs()]
        assert names == ["current_time", "mcp__web__add", "mcp__web__boom"]
        add, clock = tools.get("mcp__web__add"), tools.get("current_time")
        assert add is not None and clock is not None
        assert (add.source, add.requires_approval) == ("mcp:web", True)
        assert (clock.source, clock.requires_approval) == ("builtin", False)
        assert tools.entry_for("mcp__web__add") == "mcp:web/add"
        assert tools.entry_for("current_time") == "current_time"

        added = tools.call("mcp__web__add", '{"a": 2, "b": 3}')
        failed = tools.call("mcp__web__boom", "{}")

    assert (json.loads(added.content), added.is_error) == ({"result": 5}, False)
    assert failed.is_error


def test_a_disabled_server_leaves_its_tools_out_of_the_run(
    app: Flask, client: FlaskClient, mcp_url: str
) -> None:
    server = listed_server(client, mcp_url)
    agent = create_agent(client, tools=["current_time", "mcp:web/add"])
    client.patch(f"/api/mcp-servers/{server['id']}", json={"enabled": False})

    with registry(app, agent["id"]) as tools:
        assert [spec["function"]["name"] for spec in tools.specs()] == ["current_time"]


def test_a_tool_the_server_no_longer_lists_is_left_out(
    app: Flask, client: FlaskClient, mcp_url: str
) -> None:
    listed_server(client, mcp_url)
    agent = create_agent(client, tools=["mcp:web/add"])
    with db.session_scope(app) as session:
        server = agent_tools.mcp_servers.servers_named(session, {"web"})[0]
        server.tools = [tool for tool in server.tools or [] if tool["name"] != "add"]

    with registry(app, agent["id"]) as tools:
        assert tools.specs() == []


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose socket accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("failure", ["dead", "hung"])
def test_a_server_that_fails_at_run_time_is_an_error_result(
    make_app: AppFactory, mcp_url: str, silent_port: int, failure: str
) -> None:
    client = make_app().test_client()
    server = listed_server(client, mcp_url)
    agent = create_agent(client, tools=["mcp:web/add"])
    port = free_port() if failure == "dead" else silent_port
    client.patch(f"/api/mcp-servers/{server['id']}", json={"url": f"http://127.0.0.1:{port}/mcp"})
    # The run's app, on the same database, with a short deadline to connect.
    impatient = make_app(MCP_CONNECT_TIMEOUT_SECONDS=0.5)

    with registry(impatient, agent["id"]) as tools:
        result = tools.call("mcp__web__add", {"a": 1, "b": 2})

    assert result.is_error
    assert "MCP server 'web': could not call add" in result.content
    if failure == "hung":
        assert "connecting timed out" in result.content


def test_a_slow_tool_times_out_as_an_error_result(make_app: AppFactory, mcp_url: str) -> None:
    app = make_app(MCP_CALL_TIMEOUT_SECONDS=0.5)
    client = app.test_client()
    listed_server(client, mcp_url)
    agent = create_agent(client, tools=["mcp:web/slow"])

    with registry(app, agent["id"]) as tools:
        result = tools.call("mcp__web__slow", {})

    assert result.is_error
    assert "timed out after 0.5 s" in result.content


def add_stdio_server(client: FlaskClient, **fields: Any) -> None:
    """Add the test MCP server as ``local`` over stdio, and list its tools."""
    body = {"name": "local", "transport": "stdio", "command": sys.executable}
    server = client.post(
        "/api/mcp-servers", json={**body, "args": [str(MCP_SERVER)], **fields}
    ).get_json()
    assert client.get(f"/api/mcp-servers/{server['id']}/tools").status_code == 200


def test_a_stdio_tool_runs_with_its_env(make_app: AppFactory) -> None:
    app = make_app(MCP_ALLOW_STDIO=True)
    client = app.test_client()
    add_stdio_server(client, env={"TOKEN": "from-env"})
    agent = create_agent(client, tools=["mcp:local/secret_env"])

    with registry(app, agent["id"]) as tools:
        result = tools.call("mcp__local__secret_env", {})

    assert json.loads(result.content) == {"result": "from-env"}


def test_stdio_tools_are_left_out_once_stdio_is_turned_off(make_app: AppFactory) -> None:
    allowed = make_app(MCP_ALLOW_STDIO=True)
    client = allowed.test_client()
    add_stdio_server(client)
    agent = create_agent(client, tools=["current_time", "mcp:local/add"])
    refused_app = make_app()

    with registry(refused_app, agent["id"]) as tools:
        assert [spec["function"]["name"] for spec in tools.specs()] == ["current_time"]
    assert not any(
        tool["source"] == "mcp:local"
        for tool in refused_app.test_client().get("/api/tools").get_json()
    )


# --- search_threads -------------------------------------------------------------------


def test_search_threads_finds_the_agents_own_messages_ignoring_case(
    app: Flask, client: FlaskClient
) -> None:
    agent = create_agent(client, tools=["search_threads"])
    other = create_agent(client, name="other")
    thread = client.post(
        "/api/threads", json={"agent_id": agent["id"], "title": "Fruit"}
    ).get_json()
    elsewhere = client.post("/api/threads", json={"agent_id": other["id"]}).get_json()
    for content in ("I like BANANAS.", "Nothing here", "100% banana_split"):
        client.post(f"/api/threads/{thread['id']}/messages", json={"content": content})
    client.post(f"/api/threads/{elsewhere['id']}/messages", json={"content": "banana of another"})
    long = "x" * 1000 + " banana " + "y" * 1000
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": long})

    with registry(app, agent["id"]) as tools:
        found = json.loads(tools.call("search_threads", {"query": "Banana"}).content)
        literal = json.loads(tools.call("search_threads", {"query": "0% banana_"}).content)
        limited = json.loads(tools.call("search_threads", {"query": "banana", "limit": 1}).content)
        nothing = json.loads(tools.call("search_threads", {"query": "%"}).content)

    contents = [result["content"] for result in found["results"]]
    assert contents[1:] == ["100% banana_split", "I like BANANAS."]
    assert "banana" in contents[0] and len(contents[0]) < 400
    assert {result["thread_id"] for result in found["results"]} == {thread["id"]}
    assert found["results"][1]["thread_title"] == "Fruit"
    assert [result["content"] for result in literal["results"]] == ["100% banana_split"]
    assert len(limited["results"]) == 1
    assert [result["content"] for result in nothing["results"]] == ["100% banana_split"]
