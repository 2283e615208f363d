"""MCP servers: what a client sends to configure one, and what it gets back.

``env`` and ``headers`` carry secrets (API keys, bearer tokens), so they are
write-only: a response names their keys (``env_keys``, ``header_names``) and
never their values. Which fields a transport uses, and whether stdio is
allowed at all, is the domain's to check (``zerg.mcp_servers``), since a
PATCH is judged on the server it would leave.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator
from pydantic import Field
from pydantic import StringConstraints

from zerg.schemas.base import Partial
from zerg.schemas.base import Request
from zerg.schemas.base import Response

# Letters, digits and hyphens, with single underscores between them: a name
# must read back unambiguously from ``mcp:<server>/<tool>`` and from the
# model-facing ``mcp__<server>__<tool>``, whose separator is a double
# underscore. 32 characters leave a tool name room within providers' 64.
MCP_SERVER_NAME_PATTERN = r"^[A-Za-z0-9-]+(_[A-Za-z0-9-]+)*$"
McpServerName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=32, pattern=MCP_SERVER_NAME_PATTERN),
    Field(description="Letters, digits, `-` and single `_`: the `<server>` of entries."),
]

McpTransport = Literal["streamable_http", "stdio"]


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


McpUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048, pattern=r"^[^\s]+$"),
    AfterValidator(_check_url),
    Field(description="The server's Streamable HTTP endpoint (http or https)."),
]
Command = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    Field(description="The program a stdio server is started with."),
]
Args = Annotated[
    list[Annotated[str, StringConstraints(max_length=4096)]],
    Field(max_length=64, description="The command's arguments. Not secret: put secrets in env."),
]
EnvName = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Env = Annotated[
    dict[EnvName, Annotated[str, StringConstraints(max_length=8192)]],
    Field(
        max_length=64,
        description="Environment variables of a stdio server. Write-only: never returned.",
    ),
]
# RFC 9110 token characters for the name; no line breaks in the value.
HeaderName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
]
HeaderValue = Annotated[str, StringConstraints(max_length=8192, pattern=r"^[^\r\n]*$")]
Headers = Annotated[
    dict[HeaderName, HeaderValue],
    Field(
        max_length=64,
        description="HTTP headers sent to a Streamable HTTP server (often `Authorization`). "
        "Write-only: never returned.",
    ),
]


class McpServerCreate(Request):
    name: McpServerName
    transport: McpTransport
    url: McpUrl | None = None
    command: Command | None = None
    args: Args = []
    env: Env = {}
    headers: Headers = {}
    enabled: bool = True


class McpServerUpdate(Partial):
    """A map (``env``, ``headers``) sent replaces the stored one; one left out stays."""

    NOT_NULL = frozenset({"name", "transport", "args", "env", "headers", "enabled"})

    name: McpServerName | None = None
    transport: McpTransport | None = None
    url: McpUrl | None = None
    command: Command | None = None
    args: Args | None = None
    env: Env | None = None
    headers: Headers | None = None
    enabled: bool | None = None


class McpServerOut(Response):
    id: int
    name: str
    transport: str
    url: str | None
    command: str | None
    args: list[str]
    env_keys: list[str] = Field(description="The names of the `env` variables set (not values).")
    header_names: list[str] = Field(description="The names of the `headers` set (not values).")
    enabled: bool
    tools_listed_at: datetime | None = Field(
        description="When the server last listed its tools; null until first listed."
    )
    created_at: datetime
    updated_at: datetime
