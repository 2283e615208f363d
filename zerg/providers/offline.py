"""The offline provider: deterministic, no network, always available."""

from __future__ import annotations

import re
import time
from collections.abc import Generator

from zerg.providers.base import ChatMessages
from zerg.providers.base import ChatOptions
from zerg.providers.base import ModelInfo
from zerg.providers.base import StreamItem
from zerg.providers.base import Usage

OFFLINE_MODEL = ModelInfo(
    id="offline", display_name="Offline model (no network)", provider="offline"
)


def _count_words(text: str) -> int:
    return len(text.split())


class OfflineProvider:
    """Lets a fresh install, the front end and the tests work without any model service.

    The reply says plainly that it comes from the offline model and echoes the
    last user message, streamed a few words at a time with ``delay`` seconds
    between pieces, so streaming looks and behaves as it does with a real model.
    """

    name = "offline"

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay

    def models(self) -> list[ModelInfo]:
        return [OFFLINE_MODEL]

    def reply(self, messages: ChatMessages) -> str:
        """Return the whole reply the stream will produce."""
        last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        said = " ".join(last_user.split()) or "nothing yet"
        return (
            "This is zerg's offline model: no language model is connected, so I can "
            f"only echo you. You said: {said}"
        )

    def stream(
        self, model: str, messages: ChatMessages, options: ChatOptions | None = None
    ) -> Generator[StreamItem, None, None]:
        pieces = re.findall(r"\S+\s*", self.reply(messages))
        for index, piece in enumerate(pieces):
            if index and self.delay:
                time.sleep(self.delay)
            yield piece
        prompt = sum(_count_words(m.get("content", "")) for m in messages)
        yield Usage(prompt, len(pieces), prompt + len(pieces))
