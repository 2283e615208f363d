"""MCP servers: their configuration, and the tools they list."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app

from zerg import mcp_servers
from zerg.api.idempotency import idempotent
from zerg.api.io import commit
from zerg.api.io import located
from zerg.api.io import no_content
from zerg.api.io import page_params
from zerg.api.io import parse_body
from zerg.api.io import parse_query
from zerg.api.io import respond
from zerg.api.io import respond_rows
from zerg.api.operations import DELETED
from zerg.api.operations import Reply
from zerg.api.operations import conflict
from zerg.api.operations import created
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.db import get_db
from zerg.schemas import McpServerCreate
from zerg.schemas import McpServerOut
from zerg.schemas import McpServerToolsOut
from zerg.schemas import McpServerUpdate
from zerg.schemas import McpToolsQuery
from zerg.schemas import Page
from zerg.schemas import Problem

bp = Blueprint("mcp_servers", __name__, url_prefix="/mcp-servers")

NAME_TAKEN = conflict("Another MCP server has this name.")
IN_USE = conflict("Agents' tools name the server: it keeps its name and cannot be deleted.")
RENAME_REFUSED = conflict(
    "Another MCP server has this name, or agents' tools name this one (it keeps its name)."
)
STDIO_OFF = conflict("A stdio server, and MCP_ALLOW_STDIO is not true: it cannot be started.")
SERVER_FAILED = Reply(
    502,
    "The server could not list its tools (refused, died, or answered an error).",
    Problem,
    problem=True,
)
SERVER_SILENT = Reply(
    504,
    "The server did not connect or list its tools within MCP_CONNECT_TIMEOUT_SECONDS "
    "or MCP_LIST_TIMEOUT_SECONDS.",
    Problem,
    problem=True,
)


@bp.get("")
@operation(
    "mcp-servers",
    "List MCP servers",
    ok(McpServerOut, "Servers, oldest first.", many=True),
    query=Page,
)
def list_servers() -> Response:
    """List MCP servers in creation order, without their secrets."""
    skip, limit = page_params(parse_query(Page))
    servers = mcp_servers.list_servers(get_db(), skip, limit)
    return respond_rows(McpServerOut, [mcp_servers.public_view(server) for server in servers])


@bp.post("")
@operation(
    "mcp-servers",
    "Add an MCP server",
    created(McpServerOut),
    body=McpServerCreate,
    also=(NAME_TAKEN,),
)
@idempotent
def create_server() -> Response:
    """Add an MCP server; `stdio` is refused (422) unless MCP_ALLOW_STDIO is true.

    `streamable_http` takes `url` and `headers`, `stdio` takes `command`,
    `args` and `env`; the other transport's fields are refused. The answer
    names the keys of `env` and `headers`, never their values.
    """
    body = parse_body(McpServerCreate)
    session = get_db(write=True)
    server = mcp_servers.create_server(session, body)
    response = respond(McpServerOut, mcp_servers.public_view(server), 201)
    return commit(located(response, "api.mcp_servers.get_server", server_id=server.id))


@bp.get("/<int:server_id>")
@operation("mcp-servers", "Get an MCP server", ok(McpServerOut))
def get_server(server_id: int) -> Response:
    """Return one MCP server, without its secrets."""
    server = mcp_servers.get_server(get_db(), server_id)
    return respond(McpServerOut, mcp_servers.public_view(server))


@bp.patch("/<int:server_id>")
@operation(
    "mcp-servers",
    "Update an MCP server (the fields sent)",
    ok(McpServerOut),
    body=McpServerUpdate,
    also=(RENAME_REFUSED,),
)
def update_server(server_id: int) -> Response:
    """Change the fields sent; `env` or `headers` sent replaces the whole map.

    Switching `transport` clears the other transport's fields. The tools list
    is kept until it is refreshed (`GET .../tools?refresh=true`).
    """
    body = parse_body(McpServerUpdate)
    session = get_db(write=True)
    server = mcp_servers.update_server(session, server_id, body)
    session.commit()
    return respond(McpServerOut, mcp_servers.public_view(server))


@bp.delete("/<int:server_id>")
@operation("mcp-servers", "Delete an MCP server", DELETED, also=(IN_USE,))
def delete_server(server_id: int) -> Response:
    """Delete an MCP server that no agent's tools name."""
    session = get_db(write=True)
    mcp_servers.delete_server(session, server_id)
    session.commit()
    return no_content()


@bp.get("/<int:server_id>/tools")
@operation(
    "mcp-servers",
    "List an MCP server's tools",
    ok(McpServerToolsOut),
    query=McpToolsQuery,
    also=(STDIO_OFF, SERVER_FAILED, SERVER_SILENT),
)
def list_server_tools(server_id: int) -> Response:
    """List the server's tools as last listed; `refresh=true` (or never listed) asks it now.

    Asking opens one short connection to the server, under the settings'
    deadlines, and stores the list for agents and runs to use.
    """
    query = parse_query(McpToolsQuery)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    listed = mcp_servers.server_tools(app, server_id, refresh=query.refresh)
    body = {
        "server_id": listed.server_id,
        "server": listed.server,
        "tools_listed_at": listed.tools_listed_at,
        "tools": [mcp_servers.catalogue_entry(listed.server, tool) for tool in listed.tools],
    }
    return respond(McpServerToolsOut, body)
