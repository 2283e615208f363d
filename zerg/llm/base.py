"""What every model provider offers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ModelInfo:
    """A model as ``GET /api/models`` lists it."""

    id: str
    display_name: str
    provider: str


class Provider(Protocol):
    """A source of models."""

    name: str

    def models(self) -> list[ModelInfo]:
        """List the models this provider can run."""
        ...
