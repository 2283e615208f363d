"""Request and response shapes of the HTTP API and the websocket (pydantic v2), by resource.

``base`` holds what every shape stands on (strict, closed, storable requests;
partial updates; query strings; the shared field types), ``rows`` the
serialising of database rows, ``problems`` the error bodies, and one module
per resource the rest. Every public name is importable from ``zerg.schemas``
itself. Responses keep the field names of the backend zerg replaces.
"""

from __future__ import annotations

from zerg.schemas.agents import OFFERED_MODEL
from zerg.schemas.agents import AgentCreate
from zerg.schemas.agents import AgentMessageCreate
from zerg.schemas.agents import AgentMessageOut
from zerg.schemas.agents import AgentMessageRole
from zerg.schemas.agents import AgentOut
from zerg.schemas.agents import AgentQuery
from zerg.schemas.agents import AgentUpdate
from zerg.schemas.agents import ModelName
from zerg.schemas.agents import ModelOut
from zerg.schemas.agents import OfferedModel
from zerg.schemas.agents import SettableAgentStatus
from zerg.schemas.base import MAX_TEXT
from zerg.schemas.base import NAME_PATTERN
from zerg.schemas.base import NO_NUL
from zerg.schemas.base import STRIPPED_WHITESPACE
from zerg.schemas.base import Id
from zerg.schemas.base import LongText
from zerg.schemas.base import Name
from zerg.schemas.base import Page
from zerg.schemas.base import Partial
from zerg.schemas.base import QueryRequest
from zerg.schemas.base import Request
from zerg.schemas.base import Response
from zerg.schemas.base import SearchText
from zerg.schemas.base import Storable
from zerg.schemas.mcp_servers import MCP_SERVER_NAME_PATTERN
from zerg.schemas.mcp_servers import STDIO_TRANSPORT
from zerg.schemas.mcp_servers import McpServerCreate
from zerg.schemas.mcp_servers import McpServerName
from zerg.schemas.mcp_servers import McpServerOut
from zerg.schemas.mcp_servers import McpServerUpdate
from zerg.schemas.mcp_servers import McpTransport
from zerg.schemas.problems import Problem
from zerg.schemas.problems import ProblemItem
from zerg.schemas.problems import ServerProblem
from zerg.schemas.problems import ValidationProblem
from zerg.schemas.rows import dump_row
from zerg.schemas.rows import row_adapter
from zerg.schemas.rows import rows_adapter
from zerg.schemas.rows import serialize
from zerg.schemas.runs import MultitaskStrategy
from zerg.schemas.runs import RunOut
from zerg.schemas.runs import RunQuery
from zerg.schemas.runs import RunStatus
from zerg.schemas.runs import RunTrigger
from zerg.schemas.runs import StrategyField
from zerg.schemas.runs import ThreadRunCreate
from zerg.schemas.schedules import CRON_DESCRIPTION
from zerg.schemas.schedules import CRON_PATTERN
from zerg.schemas.schedules import CronText
from zerg.schemas.schedules import Schedule
from zerg.schemas.schedules import SchedulePreviewOut
from zerg.schemas.schedules import SchedulePreviewQuery
from zerg.schemas.schedules import TimeZone
from zerg.schemas.system import HealthOut
from zerg.schemas.system import PoolStats
from zerg.schemas.system import ResetOut
from zerg.schemas.system import StatsOut
from zerg.schemas.system import ThreadStats
from zerg.schemas.system import WsTicketOut
from zerg.schemas.threads import MemoryStrategy
from zerg.schemas.threads import Role
from zerg.schemas.threads import ThreadCreate
from zerg.schemas.threads import ThreadMessageCreate
from zerg.schemas.threads import ThreadMessageOut
from zerg.schemas.threads import ThreadMessagePost
from zerg.schemas.threads import ThreadMessageSentOut
from zerg.schemas.threads import ThreadOut
from zerg.schemas.threads import ThreadQuery
from zerg.schemas.threads import ThreadUpdate
from zerg.schemas.tool_calls import ToolCallDecision
from zerg.schemas.tool_calls import ToolCallOut
from zerg.schemas.tools import MAX_AGENT_TOOLS
from zerg.schemas.tools import McpServerToolsOut
from zerg.schemas.tools import McpToolsQuery
from zerg.schemas.tools import ToolEntries
from zerg.schemas.tools import ToolEntry
from zerg.schemas.tools import ToolOut

__all__ = [
    "AgentCreate",
    "AgentMessageCreate",
    "AgentMessageOut",
    "AgentMessageRole",
    "AgentOut",
    "AgentQuery",
    "AgentUpdate",
    "CRON_DESCRIPTION",
    "CRON_PATTERN",
    "CronText",
    "HealthOut",
    "Id",
    "LongText",
    "MAX_AGENT_TOOLS",
    "MAX_TEXT",
    "MCP_SERVER_NAME_PATTERN",
    "McpServerCreate",
    "McpServerName",
    "McpServerOut",
    "McpServerToolsOut",
    "McpServerUpdate",
    "McpToolsQuery",
    "McpTransport",
    "MemoryStrategy",
    "ModelName",
    "ModelOut",
    "MultitaskStrategy",
    "NAME_PATTERN",
    "NO_NUL",
    "Name",
    "OFFERED_MODEL",
    "OfferedModel",
    "Page",
    "Partial",
    "PoolStats",
    "Problem",
    "ProblemItem",
    "QueryRequest",
    "Request",
    "ResetOut",
    "Response",
    "Role",
    "RunOut",
    "RunQuery",
    "RunStatus",
    "RunTrigger",
    "STDIO_TRANSPORT",
    "STRIPPED_WHITESPACE",
    "Schedule",
    "SchedulePreviewOut",
    "SchedulePreviewQuery",
    "SearchText",
    "ServerProblem",
    "SettableAgentStatus",
    "StatsOut",
    "Storable",
    "StrategyField",
    "ThreadCreate",
    "ThreadMessageCreate",
    "ThreadMessageOut",
    "ThreadMessagePost",
    "ThreadMessageSentOut",
    "ThreadOut",
    "ThreadQuery",
    "ThreadRunCreate",
    "ThreadStats",
    "ThreadUpdate",
    "TimeZone",
    "ToolEntries",
    "ToolEntry",
    "ToolOut",
    "ToolCallDecision",
    "ToolCallOut",
    "ValidationProblem",
    "WsTicketOut",
    "dump_row",
    "row_adapter",
    "rows_adapter",
    "serialize",
]
