"""The MCP client against a real local server, over stdio and Streamable HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import MCP_SERVER
from zerg.tools.mcp_client import HttpServer
from zerg.tools.mcp_client import McpClient
from zerg.tools.mcp_client import McpToolError
from zerg.tools.mcp_client import StdioServer

SECRET = "s3cr3t-value"


def stdio_server(**env: str) -> StdioServer:
    return StdioServer("tiny", sys.executable, (str(MCP_SERVER),), env=env)


def test_stdio_lists_and_calls_tools() -> None:
    client = McpClient(stdio_server())
    tools = {tool.name: tool for tool in client.list_tools()}
    assert {"add", "boom", "slow"} <= tools.keys()
    assert tools["add"].parameters["required"] == ["a", "b"]
    result = client.call_tool("add", {"a": 2, "b": 3})
    assert not result.is_error
    assert json.loads(result.content) == {"result": 5}


def test_http_lists_and_calls_tools(mcp_url: str) -> None:
    client = McpClient(HttpServer("web", mcp_url, headers={"Authorization": f"Bearer {SECRET}"}))
    assert "add" in {tool.name for tool in client.list_tools()}
    assert json.loads(client.call_tool("add", {"a": 1, "b": 1}).content) == {"result": 2}


def test_tools_list_is_cached_until_refreshed(mcp_url: str) -> None:
    client = McpClient(HttpServer("web", mcp_url))
    first = client.list_tools()
    client.server = HttpServer("web", "http://127.0.0.1:9/mcp")  # now unreachable
    assert client.list_tools() == first
    with pytest.raises(McpToolError, match="could not list tools"):
        client.list_tools(refresh=True)


def test_a_failing_tool_is_an_error_result(mcp_url: str) -> None:
    result = McpClient(HttpServer("web", mcp_url)).call_tool("boom", {})
    assert result.is_error


def test_a_slow_tool_times_out_and_the_server_stays_usable(mcp_url: str) -> None:
    client = McpClient(HttpServer("web", mcp_url), call_timeout=0.5)
    result = client.call_tool("slow", {})
    assert result.is_error and result.timed_out
    assert "timed out" in result.content
    assert not client.call_tool("add", {"a": 1, "b": 2}).is_error


def test_results_are_capped(mcp_url: str) -> None:
    result = McpClient(HttpServer("web", mcp_url), max_chars=5).call_tool("add", {"a": 1, "b": 2})
    assert result.truncated
    assert len(result.content) == 5


def test_a_server_that_dies_fails_the_call() -> None:
    client = McpClient(StdioServer("dead", sys.executable, ("-c", "raise SystemExit(1)")))
    result = client.call_tool("add", {"a": 1, "b": 2})
    assert result.is_error
    assert "'dead'" in result.content


def test_a_server_that_never_answers_times_out_on_connect() -> None:
    silent = StdioServer("silent", sys.executable, ("-c", "import sys; sys.stdin.read()"))
    result = McpClient(silent, connect_timeout=0.5).call_tool("add", {"a": 1, "b": 2})
    assert result.is_error
    assert "connecting timed out" in result.content


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    server = StdioServer(
        "leaky", sys.executable, ("-c", "raise SystemExit(1)"), env={"TOKEN": SECRET}
    )
    client = McpClient(server)
    assert SECRET not in repr(client)
    assert SECRET not in client.call_tool("add", {}).content
    http = HttpServer("web", "http://127.0.0.1:9/mcp", headers={"Authorization": SECRET})
    assert SECRET not in repr(http)
    with pytest.raises(McpToolError) as caught:
        McpClient(http, connect_timeout=2).list_tools()
    assert SECRET not in str(caught.value)


def test_env_reaches_the_stdio_server() -> None:
    result = McpClient(stdio_server(TOKEN=SECRET)).call_tool("secret_env", {})
    assert json.loads(result.content) == {"result": SECRET}


def test_works_under_gevent_monkey_patching(mcp_url: str) -> None:
    """HTTP and stdio servers work from concurrent greenlets; a slow call times out alone."""
    script = textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import gevent, json, sys
        from zerg.tools.mcp_client import HttpServer, McpClient, StdioServer
        client = McpClient(HttpServer("web", {mcp_url!r}), call_timeout=1)
        calls = [gevent.spawn(client.call_tool, "add", {{"a": n, "b": 1}}) for n in range(2)]
        slow = gevent.spawn(client.call_tool, "slow", {{}})
        stdio = McpClient(StdioServer("tiny", sys.executable, ({str(MCP_SERVER)!r},)))
        local = gevent.spawn(stdio.call_tool, "add", {{"a": 1, "b": 1}})
        gevent.joinall([*calls, slow, local], timeout=60)
        results = [[c.value.content for c in calls], slow.value.is_error, local.value.content]
        print(json.dumps(results))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    contents, slow_failed, stdio_content = json.loads(done.stdout.strip().splitlines()[-1])
    assert contents == ['{"result": 1}', '{"result": 2}']
    assert slow_failed
    assert json.loads(stdio_content) == {"result": 2}


def pid_recording_server(pid_file: Path, *, ignore_sigterm: bool = False) -> StdioServer:
    """The test server, started by a wrapper that writes its pid (and may shrug off SIGTERM)."""
    script = textwrap.dedent(
        f"""
        import os, runpy, signal, sys
        if {ignore_sigterm!r}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open({str(pid_file)!r}, "w") as file:
            file.write(str(os.getpid()))
        sys.argv = [{str(MCP_SERVER)!r}]
        runpy.run_path(sys.argv[0], run_name="__main__")
        """
    )
    return StdioServer("tiny", sys.executable, ("-c", script))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["polite", "stubborn"])
def test_a_stdio_server_is_stopped_after_a_call_that_timed_out(
    tmp_path: Path, ignore_sigterm: bool
) -> None:
    """A server busy on a call it will never finish is still stopped, by SIGKILL if need be."""
    pid_file = tmp_path / "pid"
    server = pid_recording_server(pid_file, ignore_sigterm=ignore_sigterm)
    result = McpClient(server, call_timeout=0.5).call_tool("slow", {})
    assert result.is_error and "timed out" in result.content
    assert not alive(int(pid_file.read_text()))


def test_a_stdio_command_that_does_not_exist_is_an_error_result() -> None:
    result = McpClient(StdioServer("nowhere", "zerg-no-such-mcp-server")).call_tool("add", {})
    assert result.is_error
    assert "'nowhere'" in result.content and "zerg-no-such-mcp-server" in result.content
