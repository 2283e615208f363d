"""What every model provider offers: a model list and a streamed reply, tool calls included.

A reply streams text, and the tool calls the model makes as Chat Completions
streams them: pieces keyed by ``index``, the first with the call's id and
name, the rest adding to its JSON arguments. :class:`ToolCallAssembler`
puts them together, the same way for every provider.
"""

from __future__ import annotations

from collections.abc import Generator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol


@dataclass(frozen=True)
class ModelInfo:
    """A model as ``GET /api/models`` lists it."""

    id: str
    display_name: str
    provider: str


@dataclass(frozen=True)
class Usage:
    """Token counts, when the provider reports them."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call being streamed: the call at ``index`` of this reply."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ToolCall:
    """A whole tool call of a reply: the model's id, the function's name, its JSON arguments."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatOptions:
    """What an agent asks of its model besides the messages.

    ``tools`` are Chat Completions ``tools`` entries (``{"type": "function",
    "function": {...}}``); none means the model is offered no tools.
    """

    tools: tuple[Mapping[str, Any], ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass
class ToolCallAssembler:
    """Joins a reply's :class:`ToolCallDelta` pieces into whole calls, in index order."""

    _calls: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, delta: ToolCallDelta) -> None:
        call = self._calls.setdefault(delta.index, {"id": None, "name": "", "arguments": []})
        if delta.id:
            call["id"] = delta.id
        if delta.name:
            call["name"] += delta.name
        call["arguments"].append(delta.arguments)

    def calls(self) -> list[ToolCall]:
        """The calls so far; a call the model sent no id for is given one from its index."""
        return [
            ToolCall(
                id=call["id"] or f"call_{index}",
                name=call["name"],
                arguments="".join(call["arguments"]),
            )
            for index, call in sorted(self._calls.items())
        ]


# A stream yields text deltas and tool-call pieces, and, at most once and last, the usage.
StreamItem = str | ToolCallDelta | Usage
# Chat Completions messages: role and content, and tool_calls, tool_call_id, name.
ChatMessages = Sequence[Mapping[str, Any]]


class ProviderError(Exception):
    """The model service failed: unreachable, timed out, refused, or broke off."""


class Provider(Protocol):
    """A source of models that can stream a chat reply."""

    name: str

    def models(self) -> list[ModelInfo]:
        """List the models this provider can run."""
        ...

    def stream(
        self, model: str, messages: ChatMessages, options: ChatOptions | None = None
    ) -> Generator[StreamItem, None, None]:
        """Stream the reply to ``messages`` (Chat Completions messages).

        Raise :class:`ProviderError` on failure. The caller cancels by closing
        the iterator, so providers release their connection in ``finally``.
        """
        ...
