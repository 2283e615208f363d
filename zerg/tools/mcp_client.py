"""MCP client service: list and call tools on configured MCP servers.

Why this shape: the official ``mcp`` SDK is async (anyio), while zerg runs
requests and runs either on plain threads (development) or on greenlets under
gunicorn's gevent worker (monkey-patched). Keeping a long-lived event loop and
pooled sessions across those worlds would need a loop thread, cross-thread
hand-offs and reconnect logic for servers that die between runs. Instead each
operation opens its own connection inside a short ``anyio.run`` on the calling
thread or greenlet: connect, do one thing, close. It costs a spawn or an HTTP
handshake per call (0.85 s for a Python stdio server, 32 ms over HTTP on
loopback: ``bench/tool_calls.py``), which
is small next to a model round-trip, and it means a server that hangs or dies
affects exactly one call. On plain threads the loop runs on the calling
thread; under gevent it runs on one of gevent's real worker threads (asyncio
allows one running loop per OS thread, and greenlets share one), while the
calling greenlet waits cooperatively. Concurrency under gevent is therefore
bounded by the hub's thread pool size (10 by default). stdio servers are
started by zerg's own transport (:mod:`zerg.tools.mcp_stdio`), which works
on those threads too.

The tools list is cached per server (the one thing worth keeping between
calls) and refreshed on demand. Every step has its own deadline (connect,
list, call) and every failure comes back as an error :class:`ToolResult`
rather than an exception. Header values and environment values are treated as
secrets: they are left out of reprs and scrubbed from error messages.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

import anyio

from zerg.tools.registry import DEFAULT_MAX_CHARS
from zerg.tools.registry import ToolResult
from zerg.tools.registry import capped

if TYPE_CHECKING:
    import httpx2
    from mcp import Client

DEFAULT_CONNECT_TIMEOUT_SECONDS = 30.0
DEFAULT_LIST_TIMEOUT_SECONDS = 30.0
DEFAULT_CALL_TIMEOUT_SECONDS = 60.0
REDACTED = "[redacted]"

T = TypeVar("T")


@dataclass(frozen=True)
class HttpServer:
    """A Streamable HTTP server: its URL and headers (often a bearer token)."""

    label: str
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def secrets(self) -> list[str]:
        """Values that must never show in logs or errors."""
        return list(self.headers.values())


@dataclass(frozen=True)
class StdioServer:
    """A server started as a subprocess speaking MCP on stdin/stdout."""

    label: str
    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def secrets(self) -> list[str]:
        """Values that must never show in logs or errors."""
        return list(self.env.values())


ServerConfig = HttpServer | StdioServer


@dataclass(frozen=True)
class McpTool:
    """One tool as the server describes it."""

    name: str
    description: str
    parameters: dict[str, Any]


class McpToolError(Exception):
    """Listing tools failed; the message is already free of secrets.

    ``timed_out`` tells a server that did not answer in time from one that
    failed (refused the connection, died, answered with an error).
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class McpClient:
    """Talks to one MCP server, one short connection per operation."""

    def __init__(
        self,
        server: ServerConfig,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
        list_timeout: float = DEFAULT_LIST_TIMEOUT_SECONDS,
        call_timeout: float = DEFAULT_CALL_TIMEOUT_SECONDS,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.server = server
        self.connect_timeout = connect_timeout
        self.list_timeout = list_timeout
        self.call_timeout = call_timeout
        self.max_chars = max_chars
        self._tools: list[McpTool] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"McpClient({self.server!r})"

    def list_tools(self, *, refresh: bool = False) -> list[McpTool]:
        """The server's tools, from the cache unless ``refresh`` or never fetched.

        Raises :class:`McpToolError` (secret-free) when the server cannot answer,
        because a caller building the tools list must know it is incomplete.
        """
        with self._lock:
            if self._tools is not None and not refresh:
                return list(self._tools)

        async def fetch(client: Client) -> list[McpTool]:
            result = await client.list_tools()
            return [
                McpTool(tool.name, tool.description or "", dict(tool.input_schema))
                for tool in result.tools
            ]

        try:
            tools = self._run(fetch, self.list_timeout)
        except Exception as error:  # noqa: BLE001 - reported with secrets removed
            message = self._describe("list tools", error, self.list_timeout)
            raise McpToolError(message, timed_out=isinstance(error, TimeoutError)) from None
        with self._lock:
            self._tools = tools
        return list(tools)

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call one tool; a hang, a crash or an MCP error becomes an error result."""

        async def call(client: Client) -> ToolResult:
            result = await client.call_tool(name, arguments)
            if result.structured_content is not None:
                text = json.dumps(result.structured_content)
            else:
                text = "\n".join(
                    getattr(block, "text", None) or json.dumps(block.model_dump(mode="json"))
                    for block in result.content
                )
            return capped(text, self.max_chars, is_error=bool(result.is_error))

        try:
            return self._run(call, self.call_timeout)
        except Exception as error:  # noqa: BLE001 - every failure goes back to the model
            message = self._describe(f"call {name}", error, self.call_timeout)
            if isinstance(error, TimeoutError):
                return ToolResult.timeout(message)
            return ToolResult.error(message)

    def _run(self, operation: Callable[[Client], Awaitable[T]], timeout: float) -> T:
        """Connect, run ``operation`` and close, each step under its own deadline.

        One cancel scope spans the whole ``async with`` (anyio scopes must
        nest exactly) and its deadline moves from step to step.
        """

        # The SDK is imported on first use, not with zerg: it was half of the
        # second every process (a worker, a `flask` command) took to start.
        # Here, on the calling thread, with the HTTP client: httpx2's first
        # client imports modules that spawn a subprocess, which gevent allows
        # only on the hub's own thread, not on the worker thread the loop runs on.
        from mcp import Client

        http, transport = self._transport()

        async def main() -> T:
            step = "connect"
            with anyio.CancelScope(deadline=anyio.current_time() + self.connect_timeout) as scope:
                async with AsyncExitStack() as stack:
                    if http is not None:
                        await stack.enter_async_context(http)
                    client = await stack.enter_async_context(Client(transport, cache=None))
                    step = "operation"
                    scope.deadline = anyio.current_time() + timeout
                    result = await operation(client)
                    step = "close"
                    scope.deadline = anyio.current_time() + self.connect_timeout
                return result
            if step == "close":
                return result
            raise TimeoutError(step)

        return _on_own_os_thread(lambda: anyio.run(main))

    def _transport(self) -> tuple[httpx2.AsyncClient | None, Any]:
        """The SDK's transport, and the HTTP client to close with it (None for stdio)."""
        server = self.server
        if isinstance(server, StdioServer):
            from zerg.tools.mcp_stdio import stdio_transport

            return None, stdio_transport(server.command, server.args, server.env)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=server.headers, timeout=self.connect_timeout)
        return http, streamable_http_client(server.url, http_client=http)

    def _describe(self, what: str, error: BaseException, timeout: float) -> str:
        if isinstance(error, TimeoutError) and str(error) == "connect":
            message = f"connecting timed out after {self.connect_timeout:g} s"
        elif isinstance(error, TimeoutError):
            message = f"timed out after {timeout:g} s"
        else:
            message = f"{type(error).__name__}: {_first_message(error)}"
        text = f"MCP server {self.server.label!r}: could not {what}: {message}"
        for secret in self.server.secrets():
            if secret:
                text = text.replace(secret, REDACTED)
        return text


def _on_own_os_thread(function: Callable[[], T]) -> T:
    """Run ``function`` where it may own an asyncio loop.

    asyncio tracks the running loop per OS thread, not per greenlet, so under
    gevent two greenlets of one thread cannot each run a loop ("Cannot run the
    event loop while another loop is running"). When threading is patched,
    the work goes to gevent's pool of real threads (the calling greenlet
    waits cooperatively); on plain threads it runs right here.
    """
    try:
        from gevent import get_hub
        from gevent.monkey import is_module_patched
    except ImportError:  # gevent is a production extra
        return function()
    if not is_module_patched("threading"):
        return function()
    result: T = get_hub().threadpool.apply(function)
    return result


def _first_message(error: BaseException) -> str:
    """The innermost useful message: anyio wraps failures in exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return str(error) or type(error).__name__
