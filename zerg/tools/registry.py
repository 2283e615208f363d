"""Tool descriptions, argument validation and the model-facing names.

Why: a model calls a tool by name with a JSON string of arguments that may be
malformed or wrong. Every call goes through :meth:`ToolRegistry.call`, which
validates the arguments against the tool's JSON Schema, runs the tool with a
deadline and turns any failure into a :class:`ToolResult` with ``is_error``
set, so a bad tool or a bad argument is something the model reads and can
correct, never an exception that ends the run. Results are capped at a number
of characters with a ``truncated`` flag so one tool cannot flood the context.

Provider function names must match ``^[a-zA-Z0-9_-]{1,64}$``; MCP tools are
configured as ``mcp:<server>/<tool>``, so :func:`model_name_for_mcp` maps such
an entry to a safe name (with a short hash when it had to change it) and the
registry maps it back.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any

import jsonschema

NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_CHARS = 50_000
MCP_PREFIX = "mcp:"


@dataclass(frozen=True)
class ToolResult:
    """What a tool call gives back to the model: text, error flag, truncation.

    ``timed_out`` tells a call that overran its deadline from one that failed:
    both are errors to the model, but the run's record says which.
    """

    content: str
    is_error: bool = False
    truncated: bool = False
    timed_out: bool = False

    @classmethod
    def error(cls, message: str) -> ToolResult:
        """An error result: the model reads the message and may try again."""
        return cls(content=message, is_error=True)

    @classmethod
    def timeout(cls, message: str) -> ToolResult:
        """An error result for a call that did not finish in time."""
        return cls(content=message, is_error=True, timed_out=True)


def capped(content: str, max_chars: int, *, is_error: bool = False) -> ToolResult:
    """Cut ``content`` to ``max_chars`` and say so, rather than flood the context."""
    if len(content) <= max_chars:
        return ToolResult(content=content, is_error=is_error)
    return ToolResult(content=content[:max_chars], is_error=is_error, truncated=True)


# Text, or a whole result when the tool itself knows it failed (an MCP
# server's ``is_error``) and the model should read its content as an error.
ToolFunction = Callable[[dict[str, Any]], str | ToolResult]
BUILTIN_SOURCE = "builtin"


@dataclass(frozen=True)
class Tool:
    """A tool a model may call: its public description and its implementation.

    ``function`` takes the validated arguments and returns text (JSON for
    structured output) or a :class:`ToolResult`; raising is fine, the
    registry makes it an error result. ``source`` says where the tool comes
    from, as stored with each call: ``builtin`` or ``mcp:<server>``.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: ToolFunction = field(repr=False)
    requires_approval: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    source: str = BUILTIN_SOURCE

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"tool name {self.name!r} does not match {NAME_PATTERN.pattern}")
        _check_schema(json.dumps(self.parameters, sort_keys=True))

    def spec(self) -> dict[str, Any]:
        """The Chat Completions ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@functools.lru_cache(maxsize=1024)
def _check_schema(schema: str) -> None:
    """Check a JSON Schema once per process: a run makes its agent's tools as it begins.

    Checking costs about 1.5 ms a schema, the same schemas every run; a
    schema that fails is not remembered, and fails again.
    """
    jsonschema.Draft202012Validator.check_schema(json.loads(schema))


def model_name_for_mcp(server: str, tool: str) -> str:
    """A provider-safe name for ``mcp:<server>/<tool>``.

    Plain ``mcp__server__tool`` when it is already safe and short; otherwise
    the unsafe characters become ``_`` and an 8-character hash of the original
    keeps two different entries from colliding.
    """
    plain = f"mcp__{server}__{tool}"
    if NAME_PATTERN.match(plain):
        return plain
    digest = hashlib.sha256(f"{server}/{tool}".encode()).hexdigest()[:8]
    safe = re.sub(r"[^a-zA-Z0-9_-]", "_", plain)[:55]
    return f"{safe}_{digest}"


def parse_mcp_entry(entry: str) -> tuple[str, str]:
    """Split ``mcp:<server>/<tool>`` into its server label and tool name."""
    if not entry.startswith(MCP_PREFIX) or "/" not in entry:
        raise ValueError(f"{entry!r} is not of the form mcp:<server>/<tool>")
    server, _, tool = entry[len(MCP_PREFIX) :].partition("/")
    if not server or not tool:
        raise ValueError(f"{entry!r} is not of the form mcp:<server>/<tool>")
    return server, tool


class ToolRegistry:
    """The tools one run may call, by model-facing name.

    ``max_chars`` caps every result. Calls run on a small thread pool so a
    deadline can be enforced on synchronous code; a tool that overruns is
    reported as a timeout and its thread is left to finish on its own (Python
    cannot stop a thread), which is why built-in tools carry their own I/O
    timeouts as well.
    """

    def __init__(self, *, max_chars: int = DEFAULT_MAX_CHARS, max_workers: int = 4) -> None:
        self._tools: dict[str, Tool] = {}
        self._mcp_entries: dict[str, str] = {}
        self.max_chars = max_chars
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="zerg-tool"
        )

    def register(self, tool: Tool, *, mcp_entry: str | None = None) -> None:
        """Add a tool; names are unique so a model's call is never ambiguous."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        if mcp_entry is not None:
            self._mcp_entries[tool.name] = mcp_entry

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or None."""
        return self._tools.get(name)

    def entry_for(self, name: str) -> str:
        """The configured entry behind a model-facing name (``mcp:s/t`` or the name)."""
        return self._mcp_entries.get(name, name)

    def specs(self) -> list[dict[str, Any]]:
        """The ``tools`` list to send to the model."""
        return [tool.spec() for tool in self._tools.values()]

    def close(self) -> None:
        """Stop accepting calls; running ones finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        """Validate and run one call; every failure comes back as an error result."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult.error(f"unknown tool {name!r}")
        parsed = _parse_arguments(arguments)
        if isinstance(parsed, ToolResult):
            return parsed
        problems = sorted(
            jsonschema.Draft202012Validator(tool.parameters).iter_errors(parsed),
            key=lambda error: list(error.path),
        )
        if problems:
            details = "; ".join(_describe(problem) for problem in problems)
            return ToolResult.error(f"invalid arguments for {name}: {details}")
        future = self._pool.submit(tool.function, parsed)
        try:
            content = future.result(timeout=tool.timeout_seconds)
        except concurrent.futures.TimeoutError:
            return ToolResult.timeout(f"tool {name} timed out after {tool.timeout_seconds:g} s")
        except Exception as error:  # noqa: BLE001 - any tool failure goes back to the model
            return ToolResult.error(f"tool {name} failed: {type(error).__name__}: {error}")
        if isinstance(content, ToolResult):
            result = capped(content.content, self.max_chars, is_error=content.is_error)
            truncated = result.truncated or content.truncated
            return replace(result, truncated=truncated, timed_out=content.timed_out)
        return capped(content, self.max_chars)


def _parse_arguments(arguments: str | dict[str, Any]) -> dict[str, Any] | ToolResult:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError as error:
        return ToolResult.error(f"arguments are not valid JSON: {error.msg}")
    if not isinstance(value, dict):
        return ToolResult.error("arguments must be a JSON object")
    return value


def _describe(problem: jsonschema.ValidationError) -> str:
    where = "/".join(str(part) for part in problem.path) or "(root)"
    return f"{where}: {problem.message}"
