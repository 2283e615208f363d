"""What every model provider offers: a model list and a streamed reply."""

from __future__ import annotations

from collections.abc import Generator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
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


# A stream yields text deltas and, at most once and last, the usage.
StreamItem = str | Usage
ChatMessages = Sequence[Mapping[str, str]]


class ProviderError(Exception):
    """The model service failed: unreachable, timed out, refused, or broke off."""


class Provider(Protocol):
    """A source of models that can stream a chat reply."""

    name: str

    def models(self) -> list[ModelInfo]:
        """List the models this provider can run."""
        ...

    def stream(self, model: str, messages: ChatMessages) -> Generator[StreamItem, None, None]:
        """Stream the reply to ``messages`` (dicts with ``role`` and ``content``).

        Raise :class:`ProviderError` on failure. The caller cancels by closing
        the iterator, so providers release their connection in ``finally``.
        """
        ...
