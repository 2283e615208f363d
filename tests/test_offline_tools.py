"""The offline model's one tool rule: ``/tool <entry> <JSON arguments>``.

It is what lets the whole tool flow run with no model service, so the rule is
checked here piece by piece: which messages make a call, how the call
streams, and the text it answers with otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from zerg.providers.base import ChatMessages
from zerg.providers.base import ChatOptions
from zerg.providers.base import StreamItem
from zerg.providers.base import ToolCall
from zerg.providers.base import ToolCallAssembler
from zerg.providers.base import ToolCallDelta
from zerg.providers.base import Usage
from zerg.providers.offline import OfflineProvider
from zerg.tools.builtin import current_time_tool
from zerg.tools.registry import ToolRegistry
from zerg.tools.registry import model_name_for_mcp


def function(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


TOOLS = ChatOptions(
    tools=(
        current_time_tool().spec(),
        function(model_name_for_mcp("tiny", "add")),
    )
)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def stream(messages: ChatMessages, options: ChatOptions | None = TOOLS) -> list[StreamItem]:
    return list(OfflineProvider(delay=0).stream("offline", messages, options))


def text_of(items: list[StreamItem]) -> str:
    assert not [item for item in items if isinstance(item, ToolCallDelta)]
    return "".join(item for item in items if isinstance(item, str))


def call_of(items: list[StreamItem]) -> ToolCall:
    assert not [item for item in items if isinstance(item, str)]
    assembler = ToolCallAssembler()
    for item in items:
        if isinstance(item, ToolCallDelta):
            assembler.add(item)
    (call,) = assembler.calls()
    return call


def answered(call: ToolCall, content: str) -> list[dict[str, Any]]:
    """The assistant message making ``call`` and the tool message answering it."""
    whole = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    return [
        {"role": "assistant", "content": None, "tool_calls": [whole]},
        {"role": "tool", "tool_call_id": call.id, "content": content},
    ]


def test_a_builtin_tool_is_called_with_streamed_arguments() -> None:
    items = stream(ask('/tool current_time {"timezone": "Europe/Paris"}'))

    deltas = [item for item in items if isinstance(item, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "call_offline_2", "current_time", "")
    assert len(deltas) >= 3  # the arguments come in several fragments
    assert all((d.index, d.id, d.name) == (0, None, None) for d in deltas[1:])
    call = call_of(items)
    assert call.name == "current_time"
    assert json.loads(call.arguments) == {"timezone": "Europe/Paris"}
    assert items[-1] == Usage(6, len(deltas), 6 + len(deltas))


def test_an_mcp_tool_is_called_by_its_model_facing_name() -> None:
    call = call_of(stream(ask('/tool mcp:tiny/add {"a": 2, "b": 3}')))
    assert (call.name, json.loads(call.arguments)) == ("mcp__tiny__add", {"a": 2, "b": 3})


def test_an_mcp_entry_whose_name_is_hashed_is_found() -> None:
    options = ChatOptions(tools=(function(model_name_for_mcp("my.server", "sum")),))

    call = call_of(stream(ask("/tool mcp:my.server/sum {}"), options))

    assert call.name == model_name_for_mcp("my.server", "sum")
    assert call.name != "mcp__my.server__sum"


def test_arguments_may_be_left_out() -> None:
    assert call_of(stream(ask("/tool current_time"))).arguments == "{}"


def test_the_result_is_reported_in_text_pieces() -> None:
    first = ask('/tool current_time {"timezone": "UTC"}')
    call = call_of(stream(first))
    history = [*first, *answered(call, '{"iso": "2026-12-06T17:00:00"}')]

    items = stream(history)

    texts = [item for item in items if isinstance(item, str)]
    assert len(texts) > 3
    assert text_of(items) == 'The tool current_time answered: {"iso": "2026-12-06T17:00:00"}'
    assert isinstance(items[-1], Usage)


def test_a_second_call_in_the_conversation_gets_another_id() -> None:
    first = call_of(stream(ask("/tool current_time")))
    history = [
        *ask("/tool current_time"),
        {"role": "assistant", "content": None, "tool_calls": [{"id": first.id}]},
        {"role": "tool", "tool_call_id": first.id, "content": "{}"},
        {"role": "assistant", "content": "The tool current_time answered: {}"},
        {"role": "user", "content": "/tool current_time"},
    ]

    second = call_of(stream(history))

    assert second.id != first.id
    assert second.id.startswith("call_offline_")


def test_calls_are_deterministic() -> None:
    messages = ask('/tool mcp:tiny/add {"a": 1, "b": 1}')
    assert stream(messages) == stream(messages)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (TOOLS, "I cannot call search_threads: this agent does not have that tool (its tools: "),
        (
            None,
            "I cannot call search_threads: this agent does not have that tool (its tools: none).",
        ),
        (ChatOptions(), "(its tools: none)."),
    ],
)
def test_a_tool_the_agent_lacks_is_refused_in_text(options: ChatOptions | None, said: str) -> None:
    reply = text_of(stream(ask('/tool search_threads {"query": "x"}'), options))
    assert said in reply


@pytest.mark.parametrize(
    "command", ["/tool mcp:tiny/nothing {}", "/tool mcp:tiny {}", "/tool mcp:/add {}"]
)
def test_entries_that_name_no_offered_tool_are_refused(command: str) -> None:
    assert "does not have that tool" in text_of(stream(ask(command)))


def test_an_offered_function_name_is_accepted_as_given() -> None:
    call = call_of(stream(ask("/tool mcp__tiny__add {}")))
    assert call.name == "mcp__tiny__add"


@pytest.mark.parametrize("arguments", ["[1, 2]", '"Paris"', "{timezone: UTC}", "null", "{"])
def test_arguments_that_are_not_a_json_object_are_refused(arguments: str) -> None:
    reply = text_of(stream(ask(f"/tool current_time {arguments}")))
    assert reply.startswith("I cannot call current_time: its arguments must be a JSON object")


def test_a_bare_command_explains_itself() -> None:
    assert text_of(stream(ask("/tool"))).startswith("To call a tool, write /tool <tool>")


@pytest.mark.parametrize(
    "content", ["/toolbox current_time {}", "please /tool current_time {}", "/TOOL current_time"]
)
def test_other_messages_are_echoed_as_before(content: str) -> None:
    assert text_of(stream(ask(content))).endswith(f"You said: {content}")


def test_a_command_answered_earlier_is_not_called_again() -> None:
    # The last message is the assistant's; only a last user message calls.
    history = [*ask("/tool current_time"), {"role": "assistant", "content": "Done."}]
    assert "You said: /tool current_time" in text_of(stream(history))


def test_a_call_runs_through_the_registry_and_its_result_is_reported() -> None:
    registry = ToolRegistry()
    registry.register(current_time_tool())
    options = ChatOptions(tools=tuple(registry.specs()))
    history: list[dict[str, Any]] = ask('/tool current_time {"timezone": "Asia/Tokyo"}')
    try:
        call = call_of(stream(history, options))
        result = registry.call(call.name, call.arguments)
    finally:
        registry.close()
    history += answered(call, result.content)

    reply = text_of(stream(history, options))

    assert not result.is_error
    assert reply == f"The tool current_time answered: {result.content}"
    assert json.loads(result.content)["timezone"] == "Asia/Tokyo"
