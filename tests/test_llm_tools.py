"""Tool calls through the OpenAI provider, over real HTTP to the stand-in.

The stand-in streams tool calls as OpenAI does (id and name first with empty
arguments, then argument fragments, call after call), so these check what the
provider yields piece by piece, what :class:`ToolCallAssembler` makes of it,
and what the request carried: the agent's options and the tool history.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.conftest import MakeProvider
from tests.helpers import collect_until_error
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from tests.openai_standin import ScriptedCall
from zerg.providers.base import ChatOptions
from zerg.providers.base import StreamItem
from zerg.providers.base import ToolCall
from zerg.providers.base import ToolCallAssembler
from zerg.providers.base import ToolCallDelta
from zerg.providers.base import Usage

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Zürich and Oslo?"}]


def calls_of(items: list[StreamItem]) -> list[ToolCall]:
    assembler = ToolCallAssembler()
    for item in items:
        if isinstance(item, ToolCallDelta):
            assembler.add(item)
    return assembler.calls()


def deltas_of(items: list[StreamItem]) -> list[ToolCallDelta]:
    return [item for item in items if isinstance(item, ToolCallDelta)]


def test_a_streamed_tool_call_comes_as_deltas_that_assemble_into_it(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    arguments = '{"city": "Zürich"}'
    standin.script(Reply(tool_calls=[ScriptedCall("get_weather", arguments, id="call_abc")]))

    items = list(make_provider().stream("standin-small", ASK, ChatOptions(tools=(WEATHER,))))

    deltas = deltas_of(items)
    assert deltas[0] == ToolCallDelta(0, "call_abc", "get_weather", "")
    # Later pieces carry argument fragments only.
    assert all((d.index, d.id, d.name) == (0, None, None) for d in deltas[1:])
    assert len(deltas) == 1 + 3  # 18 characters in fragments of 8
    assert calls_of(items) == [ToolCall("call_abc", "get_weather", arguments)]
    assert not [item for item in items if isinstance(item, str)]
    assert isinstance(items[-1], Usage)


def test_parallel_calls_after_some_text_keep_their_order(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(
        Reply(
            pieces=("Let me ", "look."),
            tool_calls=[
                ScriptedCall("get_weather", '{"city": "Zürich"}', fragment=4),
                ScriptedCall("get_weather", '{"city": "Oslo"}', fragment=4),
                ScriptedCall("current_time", "{}"),
            ],
        )
    )

    items = list(make_provider().stream("standin-small", ASK, ChatOptions(tools=(WEATHER,))))

    assert items[:2] == ["Let me ", "look."]
    assert [d.index for d in deltas_of(items) if d.name] == [0, 1, 2]
    assert calls_of(items) == [
        ToolCall("call_standin_0", "get_weather", '{"city": "Zürich"}'),
        ToolCall("call_standin_1", "get_weather", '{"city": "Oslo"}'),
        ToolCall("call_standin_2", "current_time", "{}"),
    ]


def test_arguments_split_inside_strings_and_escapes_join_back_exactly(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    arguments = json.dumps({"text": 'say "hi"\nto Zoë', "n": 12345}, ensure_ascii=False)
    standin.script(Reply(tool_calls=[ScriptedCall("echo", arguments, fragment=3)]))

    items = list(make_provider().stream("standin-small", ASK))

    fragments = [d.arguments for d in deltas_of(items)[1:]]
    assert '"hi' in "".join(fragments) and not any(f == arguments for f in fragments)
    assert any(f.count('"') % 2 for f in fragments)  # some piece ends inside a string
    (call,) = calls_of(items)
    assert json.loads(call.arguments) == {"text": 'say "hi"\nto Zoë', "n": 12345}


def test_options_are_sent(standin: OpenAIStandIn, make_provider: MakeProvider) -> None:
    options = ChatOptions(tools=(WEATHER,), temperature=0.0, max_tokens=256)

    list(make_provider().stream("standin-small", ASK, options))

    body = standin.requests[0].body
    assert body["tools"] == [WEATHER]
    # Zero is a setting, not an absence.
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 256


@pytest.mark.parametrize(
    "options", [None, ChatOptions(), ChatOptions(tools=(), temperature=None, max_tokens=None)]
)
def test_unset_options_are_left_out(
    standin: OpenAIStandIn, make_provider: MakeProvider, options: ChatOptions | None
) -> None:
    list(make_provider().stream("standin-small", ASK, options))

    body = standin.requests[0].body
    assert not {"tools", "temperature", "max_tokens", "tool_choice"} & body.keys()


def test_tool_history_is_sent_as_given(standin: OpenAIStandIn, make_provider: MakeProvider) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    history: list[dict[str, Any]] = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "-3 °C"},
        {"role": "assistant", "content": "It is cold.", "tool_calls": []},
        {"role": "user", "content": "Thanks", "tool_call_id": None, "name": None},
    ]

    items = list(make_provider().stream("standin-small", history, ChatOptions(tools=(WEATHER,))))

    assert standin.requests[0].messages == [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "-3 °C"},
        # Empty and null tool fields are left out.
        {"role": "assistant", "content": "It is cold."},
        {"role": "user", "content": "Thanks"},
    ]
    assert "".join(i for i in items if isinstance(i, str)) == "Thanks"


def test_an_unscripted_reply_to_a_tool_result_echoes_it(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    history = [*ASK, {"role": "tool", "tool_call_id": "c", "content": "sunny and 21"}]

    items = list(make_provider().stream("standin-small", history))

    assert "".join(i for i in items if isinstance(i, str)) == "sunny and 21"


def test_calls_without_index_from_lax_servers_are_told_apart(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    # Gemini's and older Ollama's shape: whole calls, no index.
    standin.script(
        Reply(
            raw_tool_calls=[
                [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                [{"id": "b", "function": {"name": "g", "arguments": '{"x"'}}],
                [{"function": {"arguments": ": 1}"}}],
            ]
        )
    )

    items = list(make_provider().stream("standin-small", ASK))

    assert calls_of(items) == [ToolCall("a", "f", "{}"), ToolCall("b", "g", '{"x": 1}')]


def test_ids_and_names_repeated_on_every_piece_are_given_once(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    piece = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f"}}
    standin.script(
        Reply(
            raw_tool_calls=[
                [{**piece, "function": {"name": "f", "arguments": '{"a"'}}],
                [{**piece, "function": {"name": "f", "arguments": ": 2}"}}],
            ]
        )
    )

    items = list(make_provider().stream("standin-small", ASK))

    assert deltas_of(items) == [
        ToolCallDelta(0, "c1", "f", '{"a"'),
        ToolCallDelta(0, None, None, ": 2}"),
    ]
    assert calls_of(items) == [ToolCall("c1", "f", '{"a": 2}')]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"index": 0}, "tool_calls is not a list"),
        (["call"], "a tool call piece is not an object"),
        ([{"index": "0", "id": "c", "function": {"name": "f"}}], "index is not a whole number"),
        ([{"index": -1, "id": "c", "function": {"name": "f"}}], "index is not a whole number"),
        ([{"index": True, "id": "c", "function": {"name": "f"}}], "index is not a whole number"),
        ([{"index": 0, "id": "c", "function": "f"}], "function is not an object"),
        ([{"index": 0, "id": 7, "function": {"name": "f"}}], "is not a string"),
        (
            [{"index": 0, "id": "c", "function": {"name": "f", "arguments": {"a": 1}}}],
            "not a string",
        ),
        ([{"index": 0, "id": "c", "function": {"arguments": "{}"}}], "starts without a function"),
    ],
)
def test_malformed_tool_call_pieces_are_provider_errors(
    standin: OpenAIStandIn, make_provider: MakeProvider, raw: Any, problem: str
) -> None:
    standin.script(Reply(pieces=("Checking",), raw_tool_calls=[raw]))

    items, error = collect_until_error(make_provider().stream("standin-small", ASK))

    assert items == ["Checking"]
    assert str(error).startswith("model service sent a malformed tool call: ")
    assert problem in str(error)


def test_a_reply_broken_off_mid_arguments_is_a_provider_error(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(
        Reply(
            tool_calls=[ScriptedCall("get_weather", '{"city": "Oslo"}', fragment=4)], fail_after=3
        )
    )

    items, error = collect_until_error(make_provider().stream("standin-small", ASK))

    assert [d.arguments for d in deltas_of(items)] == ["", '{"ci', 'ty":']
    assert str(error).startswith("model service broke off the reply: ")


def test_standin_without_streaming_returns_whole_tool_calls(standin: OpenAIStandIn) -> None:
    standin.script(Reply(tool_calls=[ScriptedCall("get_weather", '{"city": "Oslo"}')]))
    with openai.OpenAI(api_key="x", base_url=standin.base_url, max_retries=0, timeout=5) as client:
        completion = client.chat.completions.create(model="standin-small", messages=ASK)  # type: ignore[arg-type]

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == (  # type: ignore[union-attr]
        "call_standin_0",
        "get_weather",
        '{"city": "Oslo"}',
    )
