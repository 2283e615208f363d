"""The tools an agent may call: which entries exist, and a registry for one run.

An agent's ``tools`` lists built-in names and ``mcp:<server>/<tool>`` entries;
this module says which of them exist (so an unknown entry is refused when the
agent is saved) and builds the :class:`ToolRegistry` a run calls them
through, with the limits the settings give. Built-in tools that need the
database (``search_threads``) open their own session through the app when
they run: a tool runs while the run holds no session.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from zerg.db import app_of
from zerg.models import Agent
from zerg.tools.builtin import current_time_tool
from zerg.tools.builtin import http_get_tool
from zerg.tools.builtin import search_threads_tool
from zerg.tools.registry import Tool
from zerg.tools.registry import ToolRegistry

BUILTIN_NAMES = ("current_time", "http_get", "search_threads")


def builtin_tools(app: Flask, agent_id: int | None) -> list[Tool]:
    """The built-in tools as the settings configure them, bound to one agent's threads."""
    config = app.config
    timeout = config["TOOL_TIMEOUT_SECONDS"]

    def search(query: str, limit: int) -> list[dict[str, Any]]:
        return []  # the thread search lands with the domain function that does it

    tools = [
        current_time_tool(),
        http_get_tool(
            config["TOOL_HTTP_ALLOWED_HOSTS"],
            timeout_seconds=timeout,
            max_bytes=config["TOOL_HTTP_MAX_BYTES"],
        ),
        search_threads_tool(search),
    ]
    return [_with_timeout(tool, timeout) for tool in tools]


def _with_timeout(tool: Tool, timeout: float) -> Tool:
    return replace(tool, timeout_seconds=min(tool.timeout_seconds, timeout))


def registry_for(session: Session, agent: Agent) -> ToolRegistry:
    """A registry holding exactly the agent's tools, for one run."""
    app = app_of(session)
    registry = ToolRegistry(max_chars=app.config["TOOL_RESULT_MAX_CHARS"])
    builtins = {tool.name: tool for tool in builtin_tools(app, agent.id)}
    for entry in agent.tools or []:
        if entry in builtins:
            registry.register(builtins[entry])
    return registry
