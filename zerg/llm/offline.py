"""The offline provider: deterministic, no network, always available."""

from __future__ import annotations

from zerg.llm.base import ModelInfo

OFFLINE_MODEL = ModelInfo(
    id="offline", display_name="Offline model (no network)", provider="offline"
)


class OfflineProvider:
    """Lets a fresh install, the front end and the tests work without any model service."""

    name = "offline"

    def models(self) -> list[ModelInfo]:
        return [OFFLINE_MODEL]
