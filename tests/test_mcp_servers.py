"""The MCP servers resource: /api/mcp-servers, and the tools each one lists.

Servers are the test MCP server (tests/fixtures/mcp_server.py) over
Streamable HTTP on loopback and over stdio, a socket that accepts and never
answers (hung) and a port nothing listens on or a command that exits (dead).
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from tests.conftest import MCP_SERVER
from tests.helpers import PROBLEM_JSON
from tests.helpers import Rows
from tests.helpers import assert_problem
from tests.helpers import create_agent
from tests.helpers import free_port
from zerg.models import McpServer

AppFactory = Callable[..., Flask]

SECRET = "s3cr3t-token-value"
SERVER_FIELDS = {
    "id",
    "name",
    "transport",
    "url",
    "command",
    "args",
    "env_keys",
    "header_names",
    "enabled",
    "tools_listed_at",
    "created_at",
    "updated_at",
}


def add_server(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/mcp-servers", json=fields)
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def http_server(client: FlaskClient, url: str, name: str = "web", **fields: Any) -> dict[str, Any]:
    return add_server(client, name=name, transport="streamable_http", url=url, **fields)


def stdio_fields(name: str = "local", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(MCP_SERVER)],
        **fields,
    }


@pytest.fixture
def stdio_app(make_app: AppFactory) -> Flask:
    """An app that may start stdio servers."""
    return make_app(MCP_ALLOW_STDIO=True)


@pytest.fixture
def hung_url() -> Iterator[str]:
    """A URL whose server accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


def refused(response: Any, loc: list[Any]) -> dict[str, Any]:
    """Check a 422 whose errors include one at ``loc``, and return that error."""
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    errors = {tuple(error["loc"]): error for error in response.get_json()["errors"]}
    assert tuple(loc) in errors, errors
    error: dict[str, Any] = errors[tuple(loc)]
    return error


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/mcp"


# --- configuring --------------------------------------------------------------


def test_create_a_streamable_http_server_shows_header_names_only(
    client: FlaskClient, db_session: Session
) -> None:
    response = client.post(
        "/api/mcp-servers",
        json={
            "name": "web-tools_1",
            "transport": "streamable_http",
            "url": "https://mcp.example.com/mcp",
            "headers": {"Authorization": f"Bearer {SECRET}", "X-Team": "blue"},
        },
    )

    assert response.status_code == 201
    server = response.get_json()
    assert response.headers["Location"] == f"/api/mcp-servers/{server['id']}"
    assert set(server) == SERVER_FIELDS
    assert server["header_names"] == ["Authorization", "X-Team"]
    assert server["env_keys"] == []
    assert (server["command"], server["args"], server["enabled"]) == (None, [], True)
    assert server["tools_listed_at"] is None
    assert SECRET not in response.get_data(as_text=True)
    stored = db_session.get(McpServer, server["id"])
    assert stored is not None and stored.headers["Authorization"] == f"Bearer {SECRET}"


def test_get_and_list_never_show_secrets(client: FlaskClient) -> None:
    first = http_server(client, "http://a.test/mcp", headers={"Authorization": SECRET})
    second = http_server(client, "http://b.test/mcp", name="second")

    listed = client.get("/api/mcp-servers")
    one = client.get(f"/api/mcp-servers/{first['id']}")

    assert listed.status_code == one.status_code == 200
    assert [server["id"] for server in listed.get_json()] == [first["id"], second["id"]]
    assert one.get_json() == first
    assert SECRET not in listed.get_data(as_text=True) + one.get_data(as_text=True)
    assert client.get("/api/mcp-servers?skip=1&limit=1").get_json() == [second]


def test_stdio_is_refused_unless_allowed(client: FlaskClient, rows: Rows) -> None:
    response = client.post("/api/mcp-servers", json=stdio_fields())

    error = refused(response, ["body", "transport"])
    assert error["type"] == "stdio_not_allowed"
    assert "MCP_ALLOW_STDIO=true" in error["msg"]
    assert rows(McpServer) == 0


def test_stdio_is_accepted_when_allowed_and_env_is_write_only(stdio_app: Flask) -> None:
    client = stdio_app.test_client()
    response = client.post("/api/mcp-servers", json=stdio_fields(env={"TOKEN": SECRET}))

    assert response.status_code == 201
    server = response.get_json()
    assert (server["transport"], server["command"]) == ("stdio", sys.executable)
    assert server["args"] == [str(MCP_SERVER)]
    assert server["env_keys"] == ["TOKEN"]
    assert SECRET not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        pytest.param({"name": "two words"}, ["body", "name"], id="space-in-name"),
        pytest.param({"name": "a__b"}, ["body", "name"], id="double-underscore"),
        pytest.param({"name": "_a"}, ["body", "name"], id="leading-underscore"),
        pytest.param({"name": "a/b"}, ["body", "name"], id="slash"),
        pytest.param({"name": "n" * 33}, ["body", "name"], id="long-name"),
        pytest.param({"name": ""}, ["body", "name"], id="empty-name"),
        pytest.param({"transport": "sse"}, ["body", "transport"], id="unknown-transport"),
        pytest.param({"url": "ftp://x.test/mcp"}, ["body", "url"], id="ftp-url"),
        pytest.param({"url": "file:///etc/passwd"}, ["body", "url"], id="file-url"),
        pytest.param({"url": "not a url"}, ["body", "url"], id="not-a-url"),
        pytest.param({"url": None}, ["body", "url"], id="url-missing"),
        pytest.param({"command": "/bin/true"}, ["body", "command"], id="command-for-http"),
        pytest.param({"env": {"A": "b"}}, ["body", "env"], id="env-for-http"),
        pytest.param({"headers": {"X-A": "b\r\nX-B: c"}}, ["body", "headers", "X-A"], id="crlf"),
        pytest.param({"headers": {"bad name": "v"}}, ["body", "headers", "bad name", "[key]"]),
        pytest.param({"enabled": "yes"}, ["body", "enabled"], id="enabled-not-bool"),
        pytest.param({"extra": 1}, ["body", "extra"], id="unknown-field"),
    ],
)
def test_create_refuses_a_bad_server(
    client: FlaskClient, rows: Rows, fields: dict[str, Any], loc: list[str]
) -> None:
    body = {"name": "web", "transport": "streamable_http", "url": "http://x.test/mcp", **fields}

    response = client.post("/api/mcp-servers", json=body)

    refused(response, loc)
    assert rows(McpServer) == 0


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        pytest.param({"command": None}, ["body", "command"], id="command-missing"),
        pytest.param({"url": "http://x.test/mcp"}, ["body", "url"], id="url-for-stdio"),
        pytest.param({"env": {"1X": "v"}}, ["body", "env", "1X", "[key]"], id="bad-env-name"),
        pytest.param({"args": [1]}, ["body", "args", 0], id="args-not-text"),
    ],
)
def test_create_refuses_a_bad_stdio_server(
    stdio_app: Flask, fields: dict[str, Any], loc: list[Any]
) -> None:
    response = stdio_app.test_client().post("/api/mcp-servers", json=stdio_fields(**fields))

    refused(response, loc)


def test_names_are_unique(client: FlaskClient, rows: Rows) -> None:
    http_server(client, "http://a.test/mcp")

    response = client.post(
        "/api/mcp-servers",
        json={"name": "web", "transport": "streamable_http", "url": "http://b.test/mcp"},
    )

    body = assert_problem(response, 409)
    assert body["detail"] == "An MCP server named 'web' already exists."
    assert rows(McpServer) == 1


def test_patch_changes_only_the_fields_sent_and_replaces_a_map_only_when_given(
    client: FlaskClient, db_session: Session
) -> None:
    server = http_server(client, "http://a.test/mcp", headers={"Authorization": SECRET})
    path = f"/api/mcp-servers/{server['id']}"

    disabled = client.patch(path, json={"enabled": False})
    moved = client.patch(path, json={"url": "https://b.test/mcp", "name": "renamed"})

    assert disabled.status_code == moved.status_code == 200
    assert disabled.get_json()["enabled"] is False
    assert disabled.get_json()["header_names"] == ["Authorization"]
    after = moved.get_json()
    assert (after["url"], after["name"], after["enabled"]) == (
        "https://b.test/mcp",
        "renamed",
        False,
    )
    stored = db_session.get(McpServer, server["id"])
    assert stored is not None and stored.headers == {"Authorization": SECRET}

    replaced = client.patch(path, json={"headers": {"X-Key": "new"}})

    assert replaced.get_json()["header_names"] == ["X-Key"]
    db_session.rollback()  # a new transaction sees the change
    assert db_session.get(McpServer, server["id"]).headers == {"X-Key": "new"}  # type: ignore[union-attr]
    assert SECRET not in disabled.get_data(as_text=True) + moved.get_data(as_text=True)


def test_patch_switching_transport_clears_the_other_transports_fields(stdio_app: Flask) -> None:
    client = stdio_app.test_client()
    server = http_server(client, "http://a.test/mcp", headers={"A": "b"})

    response = client.patch(
        f"/api/mcp-servers/{server['id']}",
        json={"transport": "stdio", "command": sys.executable, "env": {"K": "v"}},
    )

    assert response.status_code == 200
    after = response.get_json()
    assert (after["url"], after["header_names"], after["env_keys"]) == (None, [], ["K"])


@pytest.mark.parametrize(
    ("changes", "loc", "status"),
    [
        pytest.param({"name": None}, ["body", "name"], 422, id="null-name"),
        pytest.param({"headers": None}, ["body", "headers"], 422, id="null-headers"),
        pytest.param({"transport": "stdio"}, ["body", "transport"], 422, id="stdio-not-allowed"),
        pytest.param(
            {"transport": "streamable_http", "env": {"A": "b"}}, ["body", "env"], 422, id="env"
        ),
        # Wrong only against the stored server: a conflict with its state.
        pytest.param({"url": None}, None, 409, id="clearing-the-url"),
        pytest.param({"command": "x"}, None, 409, id="command-for-http"),
        pytest.param({"transport": "stdio", "command": "x"}, ["body", "transport"], 422),
        pytest.param({"name": "other"}, None, 409, id="name-taken"),
    ],
)
def test_patch_refuses_bad_changes_and_writes_nothing(
    client: FlaskClient, changes: dict[str, Any], loc: list[str] | None, status: int
) -> None:
    server = http_server(client, "http://a.test/mcp")
    http_server(client, "http://b.test/mcp", name="other")

    response = client.patch(f"/api/mcp-servers/{server['id']}", json=changes)

    if loc is None:
        assert_problem(response, status)
    else:
        refused(response, loc)
    assert client.get(f"/api/mcp-servers/{server['id']}").get_json() == server


def test_delete_a_server(client: FlaskClient, rows: Rows) -> None:
    server = http_server(client, "http://a.test/mcp")

    response = client.delete(f"/api/mcp-servers/{server['id']}")

    assert response.status_code == 204
    assert rows(McpServer) == 0
    assert_problem(client.get(f"/api/mcp-servers/{server['id']}"), 404)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/tools")],
)
def test_a_missing_server_is_404(client: FlaskClient, method: str, suffix: str) -> None:
    body = {"enabled": False} if method == "PATCH" else None
    response = client.open(f"/api/mcp-servers/99{suffix}", method=method, json=body)
    assert assert_problem(response, 404)["detail"] == "McpServer 99 not found"


def test_a_server_whose_tools_agents_use_keeps_its_name_and_stays(
    client: FlaskClient, mcp_url: str
) -> None:
    server = http_server(client, mcp_url)
    assert client.get(f"/api/mcp-servers/{server['id']}/tools").status_code == 200
    agent = create_agent(client, name="Adder", tools=["mcp:web/add"])
    path = f"/api/mcp-servers/{server['id']}"

    renamed = client.patch(path, json={"name": "elsewhere"})
    deleted = client.delete(path)

    for response in (renamed, deleted):
        assert_problem(response, 409)
        assert f"agents {agent['id']} (Adder)" in response.get_json()["detail"]
    assert client.patch(path, json={"name": "web", "enabled": False}).status_code == 200
    client.patch(f"/api/agents/{agent['id']}", json={"tools": []})
    assert client.delete(path).status_code == 204


# --- listing tools ----------------------------------------------------------------


def test_tools_are_asked_of_the_server_once_then_served_from_the_cache(
    client: FlaskClient, mcp_url: str
) -> None:
    server = http_server(client, mcp_url, headers={"Authorization": f"Bearer {SECRET}"})
    path = f"/api/mcp-servers/{server['id']}/tools"

    first = client.get(path)

    assert first.status_code == 200
    listed = first.get_json()
    assert (listed["server_id"], listed["server"]) == (server["id"], "web")
    tools = {tool["entry"]: tool for tool in listed["tools"]}
    assert {"mcp:web/add", "mcp:web/boom", "mcp:web/slow"} <= tools.keys()
    add = tools["mcp:web/add"]
    assert (add["name"], add["source"]) == ("mcp__web__add", "mcp:web")
    assert add["description"] == "Add two integers."
    assert add["parameters"]["required"] == ["a", "b"]
    shown = client.get(f"/api/mcp-servers/{server['id']}").get_json()
    assert shown["tools_listed_at"] == listed["tools_listed_at"]

    # Pointed at nothing, the server still has its cached list, until asked again.
    client.patch(f"/api/mcp-servers/{server['id']}", json={"url": dead_url()})
    assert client.get(path).get_json() == listed
    refreshed = client.get(f"{path}?refresh=true")

    assert_problem(refreshed, 502)
    assert "'web'" in refreshed.get_json()["detail"]
    assert SECRET not in refreshed.get_data(as_text=True)
    assert client.get(path).get_json() == listed


def test_a_refresh_stores_the_new_list(client: FlaskClient, mcp_url: str) -> None:
    server = http_server(client, mcp_url)
    path = f"/api/mcp-servers/{server['id']}/tools"
    first = client.get(path).get_json()

    again = client.get(f"{path}?refresh=true").get_json()

    assert again["tools"] == first["tools"]
    assert again["tools_listed_at"] > first["tools_listed_at"]


def test_a_stdio_servers_tools_are_listed(stdio_app: Flask) -> None:
    client = stdio_app.test_client()
    server = add_server(client, **stdio_fields())

    response = client.get(f"/api/mcp-servers/{server['id']}/tools")

    assert response.status_code == 200
    assert "mcp:local/add" in {tool["entry"] for tool in response.get_json()["tools"]}


def test_a_hung_server_is_504_and_the_app_goes_on(make_app: AppFactory, hung_url: str) -> None:
    client = make_app(MCP_CONNECT_TIMEOUT_SECONDS=0.5).test_client()
    server = http_server(client, hung_url)

    response = client.get(f"/api/mcp-servers/{server['id']}/tools")

    assert_problem(response, 504)
    assert "timed out after 0.5 s" in response.get_json()["detail"]
    assert client.get(f"/api/mcp-servers/{server['id']}").get_json()["tools_listed_at"] is None


@pytest.mark.parametrize("dead", ["http", "stdio"])
def test_a_dead_server_is_502_without_its_secrets(
    stdio_app: Flask, dead: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = stdio_app.test_client()
    if dead == "http":
        server = http_server(client, dead_url(), headers={"Authorization": SECRET})
    else:
        fields = stdio_fields(args=["-c", "raise SystemExit(1)"], env={"TOKEN": SECRET})
        server = add_server(client, **fields)

    response = client.get(f"/api/mcp-servers/{server['id']}/tools")

    assert_problem(response, 502)
    assert "could not list tools" in response.get_json()["detail"]
    assert SECRET not in response.get_data(as_text=True)
    assert SECRET not in caplog.text


def test_a_stdio_server_is_not_started_once_stdio_is_turned_off(
    stdio_app: Flask, make_app: AppFactory
) -> None:
    server = add_server(stdio_app.test_client(), **stdio_fields())
    client = make_app().test_client()
    path = f"/api/mcp-servers/{server['id']}"

    response = client.get(f"{path}/tools")

    assert_problem(response, 409)
    assert "MCP_ALLOW_STDIO=true" in response.get_json()["detail"]
    # Switching it off (or deleting it) is still allowed; changing its command is not.
    assert client.patch(path, json={"enabled": False}).status_code == 200
    changed = client.patch(path, json={"command": "/bin/sh"})
    assert "MCP_ALLOW_STDIO=true" in assert_problem(changed, 409)["detail"]


def test_the_tools_route_refuses_a_bad_refresh(client: FlaskClient) -> None:
    server = http_server(client, "http://a.test/mcp")
    response = client.get(f"/api/mcp-servers/{server['id']}/tools?refresh=maybe")
    refused(response, ["query", "refresh"])
