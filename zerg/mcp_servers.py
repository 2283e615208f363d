"""MCP servers: every change to their configuration, and the tools they list.

Like every domain module, the changes work in the session they are handed and
leave the commit to the caller. Listing a server's tools is the exception: it
talks to the server, which may take up to MCP_CONNECT + MCP_LIST seconds, and
no session is held across such a wait (on SQLite a write session would hold
the database's write lock all along). So :func:`server_tools` takes the app
and opens two short sessions of its own, one to read the server before asking
it, one to store the list after.

**How MCP sessions are kept: they are not.** Every operation (one listing,
one call) opens its own connection to the server, does its one thing and
closes it (``zerg.tools.mcp_client``). Why:

- under gunicorn's gevent worker the SDK's asyncio loop must run on a real
  OS thread of gevent's pool (one running loop per OS thread, greenlets
  share it), so a long-lived session would need a loop thread of its own per
  server and hand-offs from every greenlet that calls it;
- a server that hangs, dies or is restarted between two calls costs exactly
  the call that meets it, with no broken pooled session to detect, reconnect
  or time out, and no state shared between runs or processes;
- the tool list, the one thing worth keeping, is cached in the database
  (``mcp_servers.tools``), shared by every worker process.

What it costs: an HTTP handshake and the MCP ``initialize`` exchange per
call over Streamable HTTP (32 ms on loopback here, ``bench/tool_calls.py``),
and a process start per call for stdio (0.85 s for a Python server), small
next to a model's round trip; a server that keeps per-session state sees each call as a new
client.

Nothing here is announced on the event bus: no websocket topic carries
servers (a client that configures them reads them back), and what matters to
watchers, an agent's tools, is announced with the agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask
from sqlalchemy import String
from sqlalchemy import cast
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zerg.db import LIKE_ESCAPE
from zerg.db import app_of
from zerg.db import like_pattern
from zerg.db import load_row
from zerg.db import session_scope
from zerg.domain_errors import Conflict
from zerg.domain_errors import InvalidField
from zerg.domain_errors import Unavailable
from zerg.models import Agent
from zerg.models import McpServer
from zerg.models import utcnow
from zerg.schemas import McpServerCreate
from zerg.schemas import McpServerUpdate
from zerg.tools.mcp_client import HttpServer
from zerg.tools.mcp_client import McpClient
from zerg.tools.mcp_client import McpToolError
from zerg.tools.mcp_client import ServerConfig
from zerg.tools.mcp_client import StdioServer
from zerg.tools.registry import MCP_PREFIX
from zerg.tools.registry import model_name_for_mcp

HTTP = "streamable_http"
STDIO = "stdio"
# The fields each transport uses; the other transport's are cleared.
FIELDS = {HTTP: ("url", "headers"), STDIO: ("command", "args", "env")}
EMPTY: dict[str, Any] = {"url": None, "headers": {}, "command": None, "args": [], "env": {}}
STDIO_REFUSED = (
    "stdio MCP servers are not allowed here: a stdio server runs a command on this "
    "machine. Set MCP_ALLOW_STDIO=true to allow them."
)

SERVERS_PAGE = select(McpServer).order_by(McpServer.created_at, McpServer.id)


@dataclass(frozen=True)
class ServerTools:
    """A server's tools as last listed, with when."""

    server_id: int
    server: str
    tools_listed_at: datetime
    tools: list[dict[str, Any]]


def public_view(server: McpServer) -> dict[str, Any]:
    """The server as the API shows it: its secrets' names, never their values."""
    return {
        "id": server.id,
        "name": server.name,
        "transport": server.transport,
        "url": server.url,
        "command": server.command,
        "args": list(server.args or []),
        "env_keys": sorted(server.env or {}),
        "header_names": sorted(server.headers or {}),
        "enabled": server.enabled,
        "tools_listed_at": server.tools_listed_at,
        "created_at": server.created_at,
        "updated_at": server.updated_at,
    }


def catalogue_entry(server: str, tool: dict[str, Any]) -> dict[str, Any]:
    """One cached tool of a server as the tool catalogue lists it."""
    return {
        "entry": f"{MCP_PREFIX}{server}/{tool['name']}",
        "name": model_name_for_mcp(server, tool["name"]),
        "source": f"{MCP_PREFIX}{server}",
        "description": tool.get("description") or "",
        "parameters": tool.get("parameters") or {"type": "object"},
    }


def server_config(server: McpServer) -> ServerConfig:
    """What the MCP client needs to reach the server, detached from the session."""
    if server.transport == STDIO:
        return StdioServer(
            server.name, server.command or "", tuple(server.args or ()), dict(server.env or {})
        )
    return HttpServer(server.name, server.url or "", dict(server.headers or {}))


def client_for(app: Flask, config: ServerConfig) -> McpClient:
    """An MCP client for one server, with the settings' deadlines and result cap."""
    settings = app.config
    return McpClient(
        config,
        connect_timeout=settings["MCP_CONNECT_TIMEOUT_SECONDS"],
        list_timeout=settings["MCP_LIST_TIMEOUT_SECONDS"],
        call_timeout=settings["MCP_CALL_TIMEOUT_SECONDS"],
        max_chars=settings["TOOL_RESULT_MAX_CHARS"],
    )


def stdio_allowed(app: Flask) -> bool:
    """Tell whether this deployment may start stdio servers (MCP_ALLOW_STDIO)."""
    return bool(app.config["MCP_ALLOW_STDIO"])


def list_servers(session: Session, skip: int, limit: int) -> Sequence[McpServer]:
    """Read a page of servers in creation order."""
    return session.scalars(SERVERS_PAGE.offset(skip).limit(limit)).all()


def get_server(session: Session, server_id: int) -> McpServer:
    """Read one server, or raise NotFound."""
    return load_row(session, McpServer, server_id)


def servers_named(session: Session, names: set[str], *, share: bool = False) -> list[McpServer]:
    """The servers with these names; ``share`` keeps them from changing until the commit."""
    if not names:
        return []
    statement = select(McpServer).where(McpServer.name.in_(sorted(names)))
    if share:
        statement = statement.with_for_update(read=True)
    return list(session.scalars(statement))


def create_server(session: Session, fields: McpServerCreate) -> McpServer:
    """Add a server; stdio only where MCP_ALLOW_STDIO allows it."""
    server = McpServer(tools=None, tools_listed_at=None)
    _configure(server, fields.model_dump(), app_of(session), creating=True)
    _check_name_free(session, server.name)
    session.add(server)
    _flush(session, server.name)
    return server


def update_server(session: Session, server_id: int, changes: McpServerUpdate) -> McpServer:
    """Change the fields sent; a map (``env``, ``headers``) sent replaces the stored one.

    Switching the transport clears the other transport's fields. A server
    whose tools agents use keeps its name: their entries name it.
    """
    server = load_row(session, McpServer, server_id, lock=True)
    sent = changes.changes()
    if "name" in sent and sent["name"] != server.name:
        _refuse_if_used(session, server, "renamed")
        _check_name_free(session, sent["name"])
    _configure(server, sent, app_of(session))
    _flush(session, server.name)
    return server


def delete_server(session: Session, server_id: int) -> None:
    """Delete a server that no agent's tools name."""
    server = load_row(session, McpServer, server_id, lock=True)
    _refuse_if_used(session, server, "deleted")
    session.delete(server)
    session.flush()


def server_tools(app: Flask, server_id: int, *, refresh: bool = False) -> ServerTools:
    """The server's tools: from the cache, or asked of the server (and cached) if
    ``refresh`` or never listed.

    Raises Unavailable (secret-free, ``timed_out`` when it did not answer in
    time) if the server cannot list them, Conflict for a stdio server where
    stdio is not allowed. The list is stored only if the server still points
    where it was asked meanwhile.
    """
    with session_scope(app, write=False) as session:
        server = load_row(session, McpServer, server_id)
        if server.tools is not None and server.tools_listed_at and not refresh:
            return ServerTools(server.id, server.name, server.tools_listed_at, server.tools)
        config = server_config(server)
    if isinstance(config, StdioServer) and not stdio_allowed(app):
        raise Conflict(STDIO_REFUSED)
    try:
        listed = client_for(app, config).list_tools(refresh=True)
    except McpToolError as error:
        raise Unavailable(str(error), timed_out=error.timed_out) from None
    tools = [
        {"name": tool.name, "description": tool.description, "parameters": tool.parameters}
        for tool in listed
    ]
    with session_scope(app) as session:
        server = load_row(session, McpServer, server_id, lock=True)
        if server_config(server) != config:
            raise Conflict(
                f"MCP server {server.name!r} was changed while its tools were listed; ask again."
            )
        server.tools = tools
        server.tools_listed_at = utcnow()
        return ServerTools(server.id, server.name, server.tools_listed_at, tools)


def agents_using(session: Session, server: str) -> list[tuple[int, str]]:
    """The agents (id, name) whose tools name an entry of this server."""
    prefix = f"{MCP_PREFIX}{server}/"
    # The stored JSON holds each entry as a quoted string; the LIKE narrows
    # the rows, the check in Python decides.
    pattern = like_pattern(f'"{prefix}')
    statement = (
        select(Agent.id, Agent.name, Agent.tools)
        .where(cast(Agent.tools, String).like(pattern, escape=LIKE_ESCAPE))
        .order_by(Agent.id)
    )
    return [
        (agent_id, name)
        for agent_id, name, tools in session.execute(statement)
        if any(entry.startswith(prefix) for entry in tools or [])
    ]


def _refuse_if_used(session: Session, server: McpServer, change: str) -> None:
    users = agents_using(session, server.name)
    if users:
        named = ", ".join(f"{agent_id} ({name})" for agent_id, name in users)
        raise Conflict(
            f"MCP server {server.name!r} cannot be {change}: the tools of agents {named} "
            f"name it. Remove its entries from their tools first."
        )


def _configure(
    server: McpServer, sent: dict[str, Any], app: Flask, *, creating: bool = False
) -> None:
    """Apply the fields sent, holding the server to its transport's fields.

    What a request gets wrong on its own (the fields of a transport it
    names) is invalid input (InvalidField, as the API document says); what
    it gets wrong only against the stored server (a field of the transport
    the server already has, a field the server lacks) is a Conflict with the
    server's state.
    """
    transport = sent.get("transport", server.transport)
    names_transport = creating or "transport" in sent

    def refuse(field: str, message: str, kind: str, *, provable: bool = names_transport) -> None:
        if provable:
            raise InvalidField(field, message, kind)
        reason = message.rstrip(".")
        raise Conflict(f"MCP server {server.name!r} (transport {transport!r}): {field} {reason}.")

    if transport == STDIO and not stdio_allowed(app) and {"transport", *FIELDS[STDIO]} & set(sent):
        refuse("transport", STDIO_REFUSED, "stdio_not_allowed")
    other = FIELDS[STDIO if transport == HTTP else HTTP]
    for name in other:
        if sent.get(name):
            refuse(name, f"is not used by transport {transport!r}", "not_used")
    for name, value in sent.items():
        setattr(server, name, value)
    for name in other:
        setattr(server, name, EMPTY[name])
    required = "url" if transport == HTTP else "command"
    if not getattr(server, required):
        refuse(required, f"is required for transport {transport!r}", "missing", provable=creating)


def _check_name_free(session: Session, name: str) -> None:
    taken = select(McpServer.id).where(McpServer.name == name)
    if session.scalar(taken) is not None:
        raise _name_taken(name)


def _flush(session: Session, name: str) -> None:
    # Two requests naming a server alike at once: the loser's insert fails.
    try:
        session.flush()
    except IntegrityError:
        raise _name_taken(name) from None


def _name_taken(name: str) -> Conflict:
    return Conflict(f"An MCP server named {name!r} already exists.")
