"""``GET /api/tools``: every tool an agent may be given."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg import agent_tools
from zerg.api.io import respond_rows
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.db import get_db
from zerg.schemas import ToolOut

bp = Blueprint("tools", __name__, url_prefix="/tools")


@bp.get("")
@operation(
    "tools",
    "List the tools agents may be given",
    ok(ToolOut, "The built-in tools, then each enabled MCP server's, by server name.", many=True),
)
def list_tools() -> Response:
    """List the built-in tools and the cached tools of enabled MCP servers.

    An agent's `tools` takes each one's `entry`; `name` is what the model
    sees. A server's tools appear once they have been listed
    (`GET /api/mcp-servers/{id}/tools`).
    """
    return respond_rows(ToolOut, agent_tools.catalogue(get_db()))
