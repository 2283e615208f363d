"""Tools: the entries an agent lists, and the catalogue the API shows of them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from typing import Any

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import Field
from pydantic import StringConstraints
from pydantic.json_schema import JsonDict
from pydantic.json_schema import JsonValue

from zerg.schemas.base import QueryRequest
from zerg.tools.builtin import BUILTIN_NAMES

MAX_AGENT_TOOLS = 128

# A built-in name (``current_time``) or ``mcp:<server>/<tool>``; which of
# them exist is the domain's to say (zerg.agent_tools.check_tools). The
# document lists the built-in names: which MCP entries exist depends on the
# servers configured and their cached tools (GET /api/tools).
ToolEntry = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[^\u0000-\u001f]+$"),
    Field(
        description="A built-in tool's name, or `mcp:<server>/<tool>` of a tool "
        "`GET /api/tools` lists.",
        json_schema_extra={"enum": list(BUILTIN_NAMES)},
    ),
]


def _no_duplicates(entries: list[str]) -> list[str]:
    seen: set[str] = set()
    for entry in entries:
        if entry in seen:
            raise ValueError(f"{entry!r} is listed twice")
        seen.add(entry)
    return entries


ToolEntries = Annotated[
    list[ToolEntry],
    Field(max_length=MAX_AGENT_TOOLS, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_no_duplicates),
]


def _approval_within_tools(tools_required: bool) -> JsonDict:
    """JSON Schema for what zerg.agent_tools.check_tools refuses: an approval for a
    tool the request's ``tools`` leaves out, stated for each documented entry.

    ``tools_required``: the approval needs ``tools`` in the same body (on
    creation, where leaving tools out means none); on an update it is
    checked against the stored tools instead (409), which no schema can say.
    """
    rules: list[JsonValue] = []
    for name in BUILTIN_NAMES:
        condition: JsonDict = {
            "required": ["approval_required"] if tools_required else ["approval_required", "tools"],
            "properties": {"approval_required": {"contains": {"const": name}}},
        }
        rules.append(
            {
                "if": condition,
                "then": {
                    "required": ["tools"],
                    "properties": {"tools": {"contains": {"const": name}}},
                },
            }
        )
    return {"allOf": rules}


APPROVAL_WITHIN_TOOLS = _approval_within_tools(tools_required=True)
APPROVAL_WITHIN_SENT_TOOLS = _approval_within_tools(tools_required=False)


class ToolOut(BaseModel):
    """One tool an agent may be given, as ``GET /api/tools`` lists it."""

    entry: str = Field(description="What an agent's `tools` lists to get this tool.")
    name: str = Field(description="The function name the model sees.")
    source: str = Field(description="`builtin`, or `mcp:<server>` for an MCP server's tool.")
    description: str
    parameters: dict[str, Any] = Field(description="The tool's arguments, as a JSON Schema.")


class McpToolsQuery(QueryRequest):
    refresh: bool = Field(
        default=False,
        description="Ask the server for its tools now, rather than answer from the cache.",
    )


class McpServerToolsOut(BaseModel):
    server_id: int
    server: str = Field(description="The server's name, as in `mcp:<server>/<tool>`.")
    tools_listed_at: datetime = Field(description="When the server last listed its tools.")
    tools: list[ToolOut]
