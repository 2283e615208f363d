"""Measure the overhead per tool call: built-in, MCP over stdio, MCP over Streamable HTTP.

Each kind is timed call by call against a direct call of the same function,
measured in the same run:

- ``builtin``: ``ToolRegistry.call("current_time", '{"timezone": "UTC"}')``
  (argument parsing, JSON Schema validation, the hand-off to the registry's
  thread pool and its deadline) against the tool's own function.
- ``stdio``: ``McpClient.call_tool("add", ...)`` on the test suite's MCP server
  (``tests/fixtures/mcp_server.py``) started as a subprocess. zerg opens one
  connection per operation, so every call spawns the server, initialises the
  session, calls and closes: that is what a run pays per call.
- ``http``: the same server over Streamable HTTP on 127.0.0.1, started once;
  each call still opens its own session (initialise, call, close).

The direct baseline for both MCP kinds is the server's ``add`` function,
imported from the fixture and called in this process. It prints, per kind, the
calls, median and p95 per call for the direct call and through zerg, the
overhead (median difference, ms) and the ratio of the medians.

    .venv/bin/python bench/tool_calls.py [--calls 200] [--stdio-calls 20] [--json out.json]
    .venv/bin/python bench/tool_calls.py --only builtin http --calls 50
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import IO
from typing import Any

from common import HOST
from common import free_port

from zerg.tools.builtin import current_time_tool
from zerg.tools.mcp_client import HttpServer
from zerg.tools.mcp_client import McpClient
from zerg.tools.mcp_client import StdioServer
from zerg.tools.registry import ToolRegistry
from zerg.tools.registry import ToolResult

SERVER = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mcp_server.py"
KINDS = ("builtin", "stdio", "http")
START_TIMEOUT = 30.0
ADD_ARGUMENTS = {"a": 2, "b": 3}


def timed(call: Callable[[], object], calls: int, warmup: int) -> list[float]:
    """Milliseconds per call, ``calls`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p95": statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0],
    }


def compare(direct: list[float], through: list[float]) -> dict[str, Any]:
    """One kind's figures: both summaries, the overhead and the ratio of the medians."""
    direct_figures, through_figures = summary(direct), summary(through)
    return {
        "calls": len(through),
        "direct_ms": direct_figures,
        "zerg_ms": through_figures,
        "overhead_ms": through_figures["median"] - direct_figures["median"],
        "ratio": through_figures["median"] / direct_figures["median"],
    }


def checked(result: ToolResult) -> ToolResult:
    """Stop the benchmark rather than time failures."""
    if result.is_error:
        raise RuntimeError(f"the tool call failed: {result.content}")
    return result


def load_fixture() -> ModuleType:
    """Import the MCP server module of the tests, for its plain functions.

    Building its server object sets up logging of every HTTP request through
    ``rich`` in this process, which would be timed with each call: undone.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    spec = importlib.util.spec_from_file_location("mcp_fixture", SERVER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root.handlers[:] = handlers
    root.setLevel(level)
    return module


def measure_builtin(calls: int, warmup: int) -> dict[str, Any]:
    tool = current_time_tool()
    registry = ToolRegistry()
    registry.register(tool)
    try:
        direct = timed(lambda: tool.function({"timezone": "UTC"}), calls, warmup)
        through = timed(
            lambda: checked(registry.call("current_time", '{"timezone": "UTC"}')), calls, warmup
        )
    finally:
        registry.close()
    return compare(direct, through)


def measure_mcp(
    client: McpClient, add: Callable[..., int], calls: int, warmup: int
) -> dict[str, Any]:
    direct = timed(lambda: add(**ADD_ARGUMENTS), calls, warmup)
    through = timed(lambda: checked(client.call_tool("add", ADD_ARGUMENTS)), calls, warmup)
    return compare(direct, through)


def wait_listening(port: int, process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Wait until the server accepts connections; fail, with its output, if it exits first."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"the MCP HTTP server exited during start-up:\n{output}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the MCP HTTP server did not listen within {START_TIMEOUT:.0f} s")


@contextmanager
def http_server() -> Iterator[str]:
    """Serve the fixture over Streamable HTTP on a free port; lend its MCP URL."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        command = [sys.executable, str(SERVER), "http", str(port)]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, process, log)
            yield f"http://{HOST}:{port}/mcp"
        finally:
            process.terminate()
            process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls, built-in and HTTP")
    parser.add_argument(
        "--stdio-calls", type=int, default=20, help="timed stdio calls (each spawns the server)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before each series")
    parser.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--json", type=Path, help="also save the results here")
    args = parser.parse_args()

    add = load_fixture().add
    results: dict[str, Any] = {}
    if "builtin" in args.only:
        results["builtin"] = measure_builtin(args.calls, args.warmup)
    if "stdio" in args.only:
        client = McpClient(StdioServer("tiny", sys.executable, (str(SERVER),)))
        results["stdio"] = measure_mcp(client, add, args.stdio_calls, args.warmup)
    if "http" in args.only:
        with http_server() as url:
            client = McpClient(HttpServer("tiny", url))
            results["http"] = measure_mcp(client, add, args.calls, args.warmup)

    print(f"overhead per tool call, after {args.warmup} warm-up calls per series")
    print(
        f"{'kind':<9}{'calls':>7}{'direct median':>15}{'direct p95':>12}"
        f"{'zerg median':>13}{'zerg p95':>11}{'overhead':>11}{'ratio':>10}"
    )
    for kind, figures in results.items():
        direct, through = figures["direct_ms"], figures["zerg_ms"]
        print(
            f"{kind:<9}{figures['calls']:>7}{direct['median']:>15.4f}{direct['p95']:>12.4f}"
            f"{through['median']:>13.3f}{through['p95']:>11.3f}"
            f"{figures['overhead_ms']:>11.3f}{figures['ratio']:>10.0f}"
        )
    print("times in ms per call; overhead = zerg median - direct median; ratio of the medians")
    if args.json:
        args.json.write_text(json.dumps({"warmup": args.warmup, "kinds": results}, indent=2))


if __name__ == "__main__":
    main()
