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
from typing import Any
from typing import Literal

from pydantic import ConfigDict
from pydantic import Field
from pydantic import StringConstraints
from pydantic.json_schema import JsonDict
from pydantic.json_schema import JsonValue
from pydantic.json_schema import WithJsonSchema

from zerg.schemas.base import NO_NUL
from zerg.schemas.base import DocumentMark
from zerg.schemas.base import Partial
from zerg.schemas.base import Request
from zerg.schemas.base import Response
from zerg.schemas.base import partial_with

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

# The key StdioTransport sets in the core schema's metadata.
STDIO_TRANSPORT = "zerg_stdio_transport"


class StdioTransport(DocumentMark):
    """Marks the transport, so the document offers ``stdio`` only where MCP_ALLOW_STDIO is true."""

    key = STDIO_TRANSPORT


McpTransport = Annotated[Literal["streamable_http", "stdio"], StdioTransport()]

# http or https, a host (a name, an IPv4 address or a bracketed IPv6 one), an
# optional port, then anything but whitespace. No user info: a password in
# a URL would be shown; credentials go in headers.
URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([^\s/?#@:\[\]]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?([/?#]\S*)?$"
)
McpUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048, pattern=URL_PATTERN),
    Field(description="The server's Streamable HTTP endpoint (http or https)."),
]
Command = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    Field(description="The program a stdio server is started with."),
]
# The most args, env variables or headers a server may have.
MAX_ENTRIES = 64
Args = Annotated[
    list[Annotated[str, StringConstraints(max_length=4096)]],
    Field(
        max_length=MAX_ENTRIES,
        description="The command's arguments. Not secret: put secrets in env.",
    ),
]
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# RFC 9110 token characters for a header's name; no line break in its value.
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HEADER_VALUE_PATTERN = r"^[^\r\n\u0000]*$"


def _map_schema(names: dict[str, Any], values: dict[str, Any]) -> WithJsonSchema:
    """Say the keys' and the values' rules as JSON Schema (pydantic's would let other keys in)."""
    return WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_ENTRIES,
            "propertyNames": names,
            "additionalProperties": {"type": "string", **values},
        }
    )


EnvName = Annotated[str, StringConstraints(max_length=128, pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[str, StringConstraints(max_length=8192)]
Env = Annotated[
    dict[EnvName, EnvValue],
    Field(
        max_length=MAX_ENTRIES,
        description="Environment variables of a stdio server. Write-only: never returned.",
    ),
    _map_schema(
        {"maxLength": 128, "pattern": ENV_NAME_PATTERN},
        {"maxLength": 8192, "pattern": NO_NUL},
    ),
]
HeaderName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=HEADER_NAME_PATTERN)
]
HeaderValue = Annotated[str, StringConstraints(max_length=8192, pattern=HEADER_VALUE_PATTERN)]
Headers = Annotated[
    dict[HeaderName, HeaderValue],
    Field(
        max_length=MAX_ENTRIES,
        description="HTTP headers sent to a Streamable HTTP server (often `Authorization`). "
        "Write-only: never returned.",
    ),
    _map_schema(
        {"minLength": 1, "maxLength": 128, "pattern": HEADER_NAME_PATTERN},
        {"maxLength": 8192, "pattern": HEADER_VALUE_PATTERN},
    ),
]


# JSON Schema for the fields each transport takes (zerg.mcp_servers checks
# them): a body that names a transport carries that transport's fields only.
_OWN_FIELDS_ONLY: list[JsonValue] = [
    {
        "if": {
            "required": ["transport"],
            "properties": {"transport": {"const": "streamable_http"}},
        },
        "then": {
            "properties": {
                "command": {"type": "null"},
                "args": {"maxItems": 0},
                "env": {"maxProperties": 0},
            },
        },
    },
    {
        "if": {"required": ["transport"], "properties": {"transport": {"const": "stdio"}}},
        "then": {"properties": {"url": {"type": "null"}, "headers": {"maxProperties": 0}}},
    },
]
TRANSPORT_FIELDS: JsonDict = {"allOf": _OWN_FIELDS_ONLY}
# On creation the transport's own field is required too.
CREATE_TRANSPORT_FIELDS: JsonDict = {
    "allOf": [
        *_OWN_FIELDS_ONLY,
        {
            "if": {"properties": {"transport": {"const": "streamable_http"}}},
            "then": {"required": ["url"], "properties": {"url": {"type": "string"}}},
        },
        {
            "if": {"properties": {"transport": {"const": "stdio"}}},
            "then": {"required": ["command"], "properties": {"command": {"type": "string"}}},
        },
    ]
}


class McpServerCreate(Request):
    model_config = ConfigDict(json_schema_extra=CREATE_TRANSPORT_FIELDS)

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

    model_config = ConfigDict(json_schema_extra=partial_with(TRANSPORT_FIELDS))

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
