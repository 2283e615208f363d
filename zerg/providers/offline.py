"""The offline provider: deterministic, no network, always available."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Generator
from collections.abc import Mapping
from typing import Any

from zerg.providers.base import ChatMessages
from zerg.providers.base import ChatOptions
from zerg.providers.base import ModelInfo
from zerg.providers.base import StreamItem
from zerg.providers.base import ToolCall
from zerg.providers.base import ToolCallDelta
from zerg.providers.base import Usage
from zerg.tools.registry import MCP_PREFIX
from zerg.tools.registry import model_name_for_mcp
from zerg.tools.registry import parse_mcp_entry

OFFLINE_MODEL = ModelInfo(
    id="offline", display_name="Offline model (no network)", provider="offline"
)
COMMAND = "/tool"
USAGE = f"{COMMAND} <tool> <JSON arguments>, e.g. {COMMAND} current_time {{}}"
# A call's arguments stream in about this many fragments, so their streaming shows.
ARGUMENT_FRAGMENTS = 3


def _count_words(text: str) -> int:
    return len(text.split())


class OfflineProvider:
    """Lets a fresh install, the front end and the tests work without any model service.

    The reply says plainly that it comes from the offline model and echoes the
    last user message, streamed a few words at a time with ``delay`` seconds
    between pieces, so streaming looks and behaves as it does with a real model.

    One deterministic rule lets it call tools, so the whole tool flow works
    with no network. When the last message is a user message
    ``/tool <entry> <JSON arguments>``, where ``entry`` is a built-in tool's
    name (``current_time``) or ``mcp:<server>/<tool>``, and the agent offers
    that tool (a function named ``entry``, or
    :func:`~zerg.tools.registry.model_name_for_mcp` of it), the reply is that
    one call: a :class:`ToolCallDelta` with its id (``call_offline_<n>``, ``n``
    the position the reply takes in the conversation) and name, then its
    arguments in a few fragments. Arguments left out mean ``{}``. A ``/tool``
    for a tool the agent does not offer, or with arguments that are not a JSON
    object, is answered in text saying so, with no call. When the last
    messages are tool results, the reply reports them: "The tool current_time
    answered: …".
    """

    name = "offline"

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay

    def models(self) -> list[ModelInfo]:
        return [OFFLINE_MODEL]

    def reply(self, messages: ChatMessages, options: ChatOptions | None = None) -> str | ToolCall:
        """Return the whole reply the stream will produce: its text, or its one tool call."""
        results = _trailing_tool_results(messages)
        if results:
            names = _called_names(messages)
            return " ".join(
                f"The tool {names.get(m.get('tool_call_id')) or m.get('name') or 'called'} "
                f"answered: {_text(m.get('content'))}"
                for m in results
            )
        last = messages[-1] if messages else {}
        if last.get("role") == "user" and _is_command(_text(last.get("content"))):
            return _tool_call(_text(last.get("content")), len(messages), options)
        last_user = next(
            (m.get("content") for m in reversed(messages) if m.get("role") == "user"), ""
        )
        said = " ".join(_text(last_user).split()) or "nothing yet"
        return (
            "This is zerg's offline model: no language model is connected, so I can "
            f"only echo you. You said: {said}"
        )

    def stream(
        self, model: str, messages: ChatMessages, options: ChatOptions | None = None
    ) -> Generator[StreamItem, None, None]:
        reply = self.reply(messages, options)
        pieces: list[StreamItem] = (
            re.findall(r"\S+\s*", reply) if isinstance(reply, str) else _call_pieces(reply)
        )
        for index, piece in enumerate(pieces):
            if index and self.delay:
                time.sleep(self.delay)
            yield piece
        prompt = sum(_count_words(_text(m.get("content"))) for m in messages)
        yield Usage(prompt, len(pieces), prompt + len(pieces))


def _text(content: Any) -> str:
    """A message's content as text; an assistant message with tool calls may have none."""
    return content if isinstance(content, str) else ""


def _is_command(text: str) -> bool:
    words = text.split(maxsplit=1)
    return bool(words) and words[0] == COMMAND


def _tool_call(text: str, position: int, options: ChatOptions | None) -> str | ToolCall:
    """The call a ``/tool`` message asks for, or the text saying why there is none."""
    words = text.split(maxsplit=2)
    if len(words) < 2:
        return f"To call a tool, write {USAGE}."
    entry = words[1]
    name = _function_name(entry)
    offered = _offered(options)
    if name is None or name not in offered:
        have = ", ".join(sorted(offered)) or "none"
        return f"I cannot call {entry}: this agent does not have that tool (its tools: {have})."
    try:
        arguments = json.loads(words[2]) if len(words) > 2 else {}
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        return (
            f"I cannot call {entry}: its arguments must be a JSON object, "
            f'such as {COMMAND} {entry} {{"name": "value"}}.'
        )
    return ToolCall(id=f"call_offline_{position}", name=name, arguments=json.dumps(arguments))


def _function_name(entry: str) -> str | None:
    """The function name the agent offers ``entry`` under; None if it cannot be one."""
    if not entry.startswith(MCP_PREFIX):
        return entry
    try:
        server, tool = parse_mcp_entry(entry)
    except ValueError:
        return None
    return model_name_for_mcp(server, tool)


def _offered(options: ChatOptions | None) -> set[str]:
    """The function names among the tools offered to the model."""
    if options is None:
        return set()
    return {
        str(tool["function"].get("name"))
        for tool in options.tools
        if isinstance(tool.get("function"), Mapping)
    }


def _call_pieces(call: ToolCall) -> list[StreamItem]:
    """A call as Chat Completions streams it: id and name first, then argument fragments."""
    size = -(-len(call.arguments) // ARGUMENT_FRAGMENTS) or 1
    fragments = [call.arguments[i : i + size] for i in range(0, len(call.arguments), size)]
    return [
        ToolCallDelta(0, call.id, call.name, ""),
        *(ToolCallDelta(0, arguments=fragment) for fragment in fragments),
    ]


def _trailing_tool_results(messages: ChatMessages) -> list[Mapping[str, Any]]:
    """The tool results that end the conversation, in order."""
    results: list[Mapping[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    return results[::-1]


def _called_names(messages: ChatMessages) -> dict[Any, str]:
    """The function name of every call in the conversation, by call id."""
    return {
        call.get("id"): call.get("function", {}).get("name", "")
        for message in messages
        for call in message.get("tool_calls") or ()
    }
