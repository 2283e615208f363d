"""Built-in tools: safe, offline-friendly helpers every agent may be given.

Why these three: the current time (models do not know it), a tightly limited
HTTP GET (read a page the operator allowed, nothing else) and a look at the
agent's own threads (memory without a vector store). Each takes its limits as
arguments so settings can be wired in later without touching this module.

The HTTP tool is where safety matters: only hosts on the allow-list are
fetched, redirects are followed by hand and each hop is checked against the
list again, bodies are read up to a byte limit and every request has a
timeout. An empty allow-list means the tool refuses everything.

The threads tool does not import storage or domain code: it takes a
:class:`ThreadSearch` callable that the domain layer provides later, bound to
its own session, which keeps the arrows pointing down.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC
from datetime import datetime
from typing import Any
from typing import Protocol
from urllib.parse import urljoin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo
from zoneinfo import ZoneInfoNotFoundError

import httpx

from zerg.tools.registry import Tool

# What an agent's ``tools`` names each built-in tool by (its model-facing name too).
BUILTIN_NAMES = ("current_time", "http_get", "search_threads")
DEFAULT_HTTP_TIMEOUT_SECONDS = 10.0
DEFAULT_HTTP_MAX_BYTES = 200_000
DEFAULT_HTTP_MAX_REDIRECTS = 3
DEFAULT_THREAD_RESULTS = 10


def current_time_tool() -> Tool:
    """``current_time``: the time now in an IANA zone (UTC by default)."""

    def run(arguments: dict[str, Any]) -> str:
        zone_name = arguments.get("timezone", "UTC")
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {zone_name!r}") from error
        now = datetime.now(UTC).astimezone(zone)
        return json.dumps({"timezone": zone_name, "iso": now.isoformat()})

    return Tool(
        name="current_time",
        description="The current date and time in an IANA time zone such as Europe/Paris.",
        parameters={
            "type": "object",
            "properties": {"timezone": {"type": "string", "minLength": 1, "maxLength": 64}},
            "additionalProperties": False,
        },
        function=run,
        timeout_seconds=5,
    )


class HostNotAllowedError(ValueError):
    """A URL (or a redirect) points at a host outside the allow-list."""


def http_get_tool(
    allowed_hosts: Iterable[str],
    *,
    timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS,
    max_bytes: int = DEFAULT_HTTP_MAX_BYTES,
    max_redirects: int = DEFAULT_HTTP_MAX_REDIRECTS,
) -> Tool:
    """``http_get``: fetch a URL on an allowed host (``host`` or ``host:port``).

    Entries match the URL's host exactly (case-insensitive), or host and port
    when the entry has a port. Only http and https. The body is read up to
    ``max_bytes``; the answer says when it was cut.
    """
    allowed = frozenset(host.lower() for host in allowed_hosts)

    def check(url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HostNotAllowedError(f"only http(s) URLs with a host are allowed: {url!r}")
        host = parts.hostname.lower()
        with_port = f"{host}:{parts.port}" if parts.port else host
        if host not in allowed and with_port not in allowed:
            raise HostNotAllowedError(f"host {with_port!r} is not on the allow-list")

    def run(arguments: dict[str, Any]) -> str:
        url = arguments["url"]
        with httpx.Client(
            timeout=timeout_seconds, follow_redirects=False, trust_env=False
        ) as client:
            for _ in range(max_redirects + 1):
                check(url)
                with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    body, cut = _read_limited(response, max_bytes)
                    return json.dumps(
                        {
                            "url": url,
                            "status": response.status_code,
                            "content_type": response.headers.get("content-type", ""),
                            "body": body.decode(response.encoding or "utf-8", errors="replace"),
                            "body_truncated": cut,
                        }
                    )
        raise ValueError(f"more than {max_redirects} redirects")

    return Tool(
        name="http_get",
        description="Fetch a web page or API response with GET, from allowed hosts only.",
        parameters={
            "type": "object",
            "properties": {"url": {"type": "string", "minLength": 1, "maxLength": 2048}},
            "required": ["url"],
            "additionalProperties": False,
        },
        function=run,
        timeout_seconds=timeout_seconds + 1,
    )


def _read_limited(response: httpx.Response, max_bytes: int) -> tuple[bytes, bool]:
    body = bytearray()
    for chunk in response.iter_bytes():
        body.extend(chunk)
        if len(body) > max_bytes:
            return bytes(body[:max_bytes]), True
    return bytes(body), False


class ThreadSearch(Protocol):
    """Searches the calling agent's own threads; the domain layer provides it.

    It is bound to one agent and opens its own session, so the tool never
    sees storage. It returns plain dicts (thread id, title, matching text...)
    that are JSON-serialisable.
    """

    def __call__(self, query: str, limit: int) -> list[dict[str, Any]]: ...


def search_threads_tool(search: ThreadSearch, *, max_results: int = DEFAULT_THREAD_RESULTS) -> Tool:
    """``search_threads``: find messages in this agent's own threads."""

    def run(arguments: dict[str, Any]) -> str:
        limit = min(int(arguments.get("limit", max_results)), max_results)
        return json.dumps({"results": search(arguments["query"], limit)}, default=str)

    return Tool(
        name="search_threads",
        description="Search this agent's own conversation threads for a word or phrase.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 200},
                "limit": {"type": "integer", "minimum": 1, "maximum": max_results},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        function=run,
        timeout_seconds=10,
    )
