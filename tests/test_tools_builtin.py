"""Built-in tools and the registry: validation, timeouts, truncation, allow-list."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest

from zerg.tools.builtin import current_time_tool
from zerg.tools.builtin import http_get_tool
from zerg.tools.builtin import search_threads_tool
from zerg.tools.registry import Tool
from zerg.tools.registry import ToolRegistry
from zerg.tools.registry import model_name_for_mcp
from zerg.tools.registry import parse_mcp_entry


class Pages(BaseHTTPRequestHandler):
    """Serves a small page, a big page and redirects on and off the allow-list."""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/big":
            body = b"x" * 5000
        elif self.path.startswith("/redirect-out"):
            self.send_response(302)
            self.send_header("Location", "http://localhost:9/secret")
            self.end_headers()
            return
        elif self.path == "/redirect-in":
            self.send_response(302)
            self.send_header("Location", "/small")
            self.end_headers()
            return
        else:
            body = b"hello"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Keep test output quiet."""


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def registry() -> Iterator[ToolRegistry]:
    tools = ToolRegistry(max_chars=1000)
    yield tools
    tools.close()


def test_current_time_in_a_zone(registry: ToolRegistry) -> None:
    registry.register(current_time_tool())
    result = registry.call("current_time", '{"timezone": "Europe/Paris"}')
    assert not result.is_error
    assert json.loads(result.content)["timezone"] == "Europe/Paris"


def test_unknown_zone_is_an_error_result(registry: ToolRegistry) -> None:
    registry.register(current_time_tool())
    result = registry.call("current_time", {"timezone": "Mars/Olympus"})
    assert result.is_error
    assert "Mars/Olympus" in result.content


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"timezone": 5}', "timezone"),
        ('{"zone": "UTC"}', "Additional properties"),
    ],
)
def test_bad_arguments_are_error_results(
    registry: ToolRegistry, arguments: str, expected: str
) -> None:
    registry.register(current_time_tool())
    result = registry.call("current_time", arguments)
    assert result.is_error
    assert expected in result.content


def test_unknown_tool_is_an_error_result(registry: ToolRegistry) -> None:
    assert registry.call("nope", "{}").is_error


def test_a_tool_that_overruns_times_out(registry: ToolRegistry) -> None:
    release = threading.Event()
    registry.register(
        Tool(
            "stuck", "waits", {"type": "object"}, lambda _: str(release.wait()), timeout_seconds=0.2
        )
    )
    result = registry.call("stuck", "{}")
    release.set()
    assert result.is_error and result.timed_out
    assert "timed out" in result.content


def test_a_tool_that_raises_is_an_error_result(registry: ToolRegistry) -> None:
    def fail(_: dict[str, Any]) -> str:
        raise RuntimeError("broken")

    registry.register(Tool("fails", "fails", {"type": "object"}, fail))
    result = registry.call("fails", "{}")
    assert result.is_error
    assert "broken" in result.content


def test_results_are_capped(registry: ToolRegistry) -> None:
    registry.register(Tool("long", "long", {"type": "object"}, lambda _: "y" * 5000))
    result = registry.call("long", "{}")
    assert result.truncated
    assert len(result.content) == 1000


def test_names_must_suit_providers() -> None:
    with pytest.raises(ValueError, match="does not match"):
        Tool("has space", "x", {"type": "object"}, lambda _: "")


def test_mcp_entries_map_to_safe_names_and_back(registry: ToolRegistry) -> None:
    assert model_name_for_mcp("files", "read") == "mcp__files__read"
    odd = model_name_for_mcp("my.server", "read/file" + "x" * 80)
    assert len(odd) <= 64
    assert odd != model_name_for_mcp("my.server", "read/file" + "x" * 81)
    assert parse_mcp_entry("mcp:files/read") == ("files", "read")
    with pytest.raises(ValueError):
        parse_mcp_entry("mcp:files")
    registry.register(Tool(odd, "x", {"type": "object"}, lambda _: ""), mcp_entry="mcp:my.server/x")
    assert registry.entry_for(odd) == "mcp:my.server/x"
    assert registry.specs()[0]["function"]["name"] == odd


def test_http_get_on_an_allowed_host(registry: ToolRegistry, site: str) -> None:
    registry.register(http_get_tool([site]))
    result = json.loads(registry.call("http_get", {"url": f"http://{site}/small"}).content)
    assert result["status"] == 200
    assert result["body"] == "hello"


def test_http_get_refuses_other_hosts(registry: ToolRegistry, site: str) -> None:
    registry.register(http_get_tool([site]))
    result = registry.call("http_get", {"url": "http://localhost:9/"})
    assert result.is_error
    assert "allow-list" in result.content
    assert registry.call("http_get", {"url": f"file://{site}/etc/passwd"}).is_error


def test_http_get_follows_redirects_only_on_the_allow_list(
    registry: ToolRegistry, site: str
) -> None:
    registry.register(http_get_tool([site]))
    assert (
        json.loads(registry.call("http_get", {"url": f"http://{site}/redirect-in"}).content)["body"]
        == "hello"
    )
    off = registry.call("http_get", {"url": f"http://{site}/redirect-out"})
    assert off.is_error
    assert "allow-list" in off.content


def test_http_get_cuts_big_bodies(site: str) -> None:
    tools = ToolRegistry(max_chars=100_000)
    tools.register(http_get_tool([site], max_bytes=1000))
    result = json.loads(tools.call("http_get", {"url": f"http://{site}/big"}).content)
    tools.close()
    assert result["body_truncated"]
    assert len(result["body"]) == 1000


def test_empty_allow_list_refuses_everything(registry: ToolRegistry, site: str) -> None:
    registry.register(http_get_tool([]))
    assert registry.call("http_get", {"url": f"http://{site}/small"}).is_error


def test_search_threads_uses_the_plugged_in_search(registry: ToolRegistry) -> None:
    seen: list[tuple[str, int]] = []

    def search(query: str, limit: int) -> list[dict[str, Any]]:
        seen.append((query, limit))
        return [{"thread_id": 1, "text": "found"}]

    registry.register(search_threads_tool(search, max_results=5))
    result = registry.call("search_threads", {"query": "found", "limit": 3})
    assert json.loads(result.content)["results"][0]["text"] == "found"
    assert seen == [("found", 3)]
    assert registry.call("search_threads", {"query": "found", "limit": 50}).is_error


def test_a_tool_with_an_invalid_schema_is_refused_every_time() -> None:
    """Schemas are checked once per process; a bad one is refused again, never remembered."""
    for _ in range(2):
        with pytest.raises(jsonschema.SchemaError):
            Tool("broken", "", {"type": "no-such-type"}, function=lambda arguments: "")
    parameters = {"type": "object", "properties": {"x": {"type": "integer"}}}
    same = [Tool("fine", "", dict(parameters), function=lambda arguments: "") for _ in range(2)]
    assert same[0].parameters == same[1].parameters == parameters
