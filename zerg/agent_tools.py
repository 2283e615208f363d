"""The tools an agent may call: which entries exist, and a registry for one run.

An agent's ``tools`` lists built-in names and ``mcp:<server>/<tool>`` entries;
this module says which of them exist (so an unknown entry is refused when the
agent is saved: :func:`check_tools`), lists every tool an agent may be given
(:func:`catalogue`) and builds the :class:`ToolRegistry` a run calls them
through, with the limits the settings give (:func:`registry_for`).

An MCP entry exists if its server does and the server's cached tool list
(``zerg.mcp_servers``) has the tool. An entry of a server whose tools were
never listed is refused rather than confirmed by asking the server: saving an
agent holds a write session, and no session waits on a network call. A run
takes MCP tools from the same cache; one whose server is gone, disabled, or
a stdio server where stdio is not allowed is left out of the run (logged),
never an exception. Built-in tools that need the database
(``search_threads``) open their own session through the app when they run: a
tool runs while the run holds no session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import jsonschema
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from zerg import conversations
from zerg import mcp_servers
from zerg.db import app_of
from zerg.db import session_scope
from zerg.domain_errors import Conflict
from zerg.domain_errors import InvalidField
from zerg.models import Agent
from zerg.models import McpServer
from zerg.tools.builtin import BUILTIN_NAMES
from zerg.tools.builtin import current_time_tool
from zerg.tools.builtin import http_get_tool
from zerg.tools.builtin import search_threads_tool
from zerg.tools.mcp_client import McpClient
from zerg.tools.registry import MCP_PREFIX
from zerg.tools.registry import Tool
from zerg.tools.registry import ToolFunction
from zerg.tools.registry import ToolRegistry
from zerg.tools.registry import ToolResult
from zerg.tools.registry import model_name_for_mcp
from zerg.tools.registry import parse_mcp_entry

log = logging.getLogger(__name__)


def builtin_tools(
    app: Flask, agent_id: int | None, names: Collection[str] = BUILTIN_NAMES
) -> list[Tool]:
    """The built-in tools called ``names``, as the settings configure them, bound to one agent.

    Only those asked for are built: a tool checks its JSON Schema as it is
    made (about 1.5 ms each), and a run builds its agent's tools as it begins.
    """
    config = app.config
    timeout = config["TOOL_TIMEOUT_SECONDS"]

    def search(query: str, limit: int) -> list[dict[str, Any]]:
        if agent_id is None:
            return []
        with session_scope(app, write=False) as session:
            return conversations.search_messages(session, agent_id, query, limit)

    makers: dict[str, Callable[[], Tool]] = {
        "current_time": current_time_tool,
        "http_get": lambda: http_get_tool(
            config["TOOL_HTTP_ALLOWED_HOSTS"],
            timeout_seconds=timeout,
            max_bytes=config["TOOL_HTTP_MAX_BYTES"],
        ),
        "search_threads": lambda: search_threads_tool(search),
    }
    return [_with_timeout(makers[name](), timeout) for name in BUILTIN_NAMES if name in names]


def _with_timeout(tool: Tool, timeout: float) -> Tool:
    return replace(tool, timeout_seconds=min(tool.timeout_seconds, timeout))


def catalogue(session: Session) -> list[dict[str, Any]]:
    """Every tool an agent may be given: the built-in ones, then each usable server's.

    A server's tools are its cached list; disabled servers, and stdio ones
    where stdio is not allowed, are left out, as a run would leave them out.
    """
    app = app_of(session)
    tools = [
        {
            "entry": tool.name,
            "name": tool.name,
            "source": tool.source,
            "description": tool.description,
            "parameters": tool.parameters,
        }
        for tool in builtin_tools(app, None)
    ]
    servers = session.scalars(select(McpServer).order_by(McpServer.name))
    for server in servers:
        if _usable(app, server):
            tools.extend(mcp_servers.catalogue_entry(server.name, t) for t in server.tools or [])
    return tools


def check_tools(
    session: Session,
    tools: list[str],
    approval_required: list[str],
    *,
    entries: bool = True,
    stored: bool = False,
) -> None:
    """Refuse (InvalidField) an entry that names no tool, or an approval for a tool not listed.

    ``entries=False`` checks only that ``approval_required`` is within
    ``tools`` (the tools were not changed). ``stored``: one of the two lists
    is the agent's stored one, so an approval outside the tools is a Conflict
    with the agent's state rather than invalid input. The servers named are
    read under a shared lock, so none is renamed or deleted before the agent
    is saved.
    """
    if entries:
        _check_entries(session, tools)
    listed = set(tools)
    for entry in approval_required:
        if entry in listed:
            continue
        if stored:
            raise Conflict(
                f"approval_required would name {entry!r}, which is not one of the agent's "
                "tools; send tools and approval_required together"
            )
        raise InvalidField(
            "approval_required",
            f"{entry!r} is not one of the agent's tools; add it to tools first",
            "not_in_tools",
        )


def _check_entries(session: Session, tools: list[str]) -> None:
    wanted: dict[str, tuple[str, str]] = {}
    for entry in tools:
        if entry in BUILTIN_NAMES:
            continue
        try:
            wanted[entry] = parse_mcp_entry(entry)
        except ValueError:
            raise InvalidField(
                "tools",
                f"unknown tool {entry!r}: neither a built-in tool ({', '.join(BUILTIN_NAMES)}) "
                "nor an entry of the form mcp:<server>/<tool>",
                "unknown_tool",
            ) from None
    named = {server for server, _ in wanted.values()}
    servers = {s.name: s for s in mcp_servers.servers_named(session, named, share=True)}
    for entry, (name, tool) in wanted.items():
        server = servers.get(name)
        if server is None:
            raise InvalidField(
                "tools", f"unknown tool {entry!r}: no MCP server is named {name!r}", "unknown_tool"
            )
        where = f"GET /api/mcp-servers/{server.id}/tools"
        if server.tools is None:
            raise InvalidField(
                "tools",
                f"cannot confirm {entry!r}: the tools of MCP server {name!r} have not been "
                f"listed yet; list them with {where}, then save the agent again",
                "tools_not_listed",
            )
        if tool not in {listed["name"] for listed in server.tools}:
            raise InvalidField(
                "tools",
                f"unknown tool {entry!r}: MCP server {name!r} did not list a tool {tool!r} "
                f"when last asked ({where}?refresh=true asks again)",
                "unknown_tool",
            )


def registry_for(session: Session, agent: Agent) -> ToolRegistry:
    """A registry holding exactly the agent's tools that can run now, for one run.

    Each tool says its ``source`` and whether it ``requires_approval`` (the
    agent's ``approval_required``); ``registry.entry_for(name)`` maps the
    model-facing name back to the agent's entry. An entry that cannot run
    (its server missing, disabled or not allowed, its tool no longer listed)
    is left out and logged.
    """
    app = app_of(session)
    registry = ToolRegistry(max_chars=app.config["TOOL_RESULT_MAX_CHARS"])
    entries = list(agent.tools or [])
    approval = set(agent.approval_required or [])
    if not entries:
        return registry
    available = {tool.name: tool for tool in builtin_tools(app, agent.id, entries)}
    available.update(_mcp_tools(session, app, entries))
    for entry in entries:
        tool = available.get(entry)
        if tool is None:
            log.warning("agent %s: tool %r left out of the run: it cannot run now", agent.id, entry)
            continue
        try:
            registry.register(
                replace(tool, requires_approval=entry in approval),
                mcp_entry=entry if entry.startswith(MCP_PREFIX) else None,
            )
        except ValueError as error:
            log.warning("agent %s: tool %r left out of the run: %s", agent.id, entry, error)
    return registry


def _mcp_tools(session: Session, app: Flask, entries: Iterable[str]) -> dict[str, Tool]:
    """The agent's MCP entries that can run now, as tools that call their server."""
    wanted: dict[str, tuple[str, str]] = {}
    for entry in entries:
        if entry.startswith(MCP_PREFIX):
            try:
                wanted[entry] = parse_mcp_entry(entry)
            except ValueError:
                continue
    servers = mcp_servers.servers_named(session, {server for server, _ in wanted.values()})
    usable = {server.name: server for server in servers if _usable(app, server)}
    clients = {
        name: mcp_servers.client_for(app, mcp_servers.server_config(server))
        for name, server in usable.items()
    }
    timeout = app.config["TOOL_TIMEOUT_SECONDS"]
    tools: dict[str, Tool] = {}
    for entry, (name, tool_name) in wanted.items():
        server = usable.get(name)
        cached = (server.tools or []) if server else []
        listed = next((tool for tool in cached if tool["name"] == tool_name), None)
        if listed is None:
            continue
        try:
            tools[entry] = Tool(
                name=model_name_for_mcp(name, tool_name),
                description=listed.get("description") or "",
                parameters=listed.get("parameters") or {"type": "object"},
                function=_caller(clients[name], tool_name),
                timeout_seconds=timeout,
                source=f"{MCP_PREFIX}{name}",
            )
        except (ValueError, jsonschema.SchemaError) as error:
            log.warning("MCP tool %r left out: its parameters are not usable: %s", entry, error)
    return tools


def _caller(client: McpClient, tool_name: str) -> ToolFunction:
    """Call one tool of the client's server; every failure comes back as an error result."""

    def call(arguments: dict[str, Any]) -> ToolResult:
        return client.call_tool(tool_name, arguments)

    return call


def _usable(app: Flask, server: McpServer) -> bool:
    """Tell whether a run may call the server's tools now."""
    if not server.enabled:
        return False
    return server.transport != mcp_servers.STDIO or mcp_servers.stdio_allowed(app)
