"""Model providers and the catalogue of models they offer.

Each configured provider is built once per app and kept in ``app.extensions``;
the API asks this module which models exist, so that an agent naming a model
no provider offers is refused when it is saved, not when it first runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask import current_app

from zerg.providers.base import ModelInfo
from zerg.providers.base import Provider
from zerg.providers.offline import OfflineProvider

EXTENSION_KEY = "zerg.providers"


@dataclass(frozen=True)
class Providers:
    """The app's providers, in the order LLM_PROVIDER lists them."""

    providers: tuple[Provider, ...]

    def models(self) -> list[ModelInfo]:
        return [model for provider in self.providers for model in provider.models()]

    def provider_for(self, model_id: str) -> Provider | None:
        for provider in self.providers:
            if any(model.id == model_id for model in provider.models()):
                return provider
        return None

    def default_model(self) -> str:
        return self.models()[0].id


def build_provider(name: str, config: Any) -> Provider:
    """Build one provider from the app's configuration."""
    if name == "openai":
        from zerg.providers.openai import OpenAIProvider

        return OpenAIProvider(
            api_key=config["OPENAI_API_KEY"],
            base_url=config["OPENAI_BASE_URL"],
            models=config["OPENAI_MODELS"],
            timeout=config["OPENAI_TIMEOUT_SECONDS"],
            max_retries=config["OPENAI_MAX_RETRIES"],
        )
    return OfflineProvider(delay=config["OFFLINE_DELAY_SECONDS"])


def get_providers(app: Flask | None = None) -> Providers:
    """Return the current (or given) app's providers."""
    target = app if app is not None else current_app
    providers: Providers = target.extensions[EXTENSION_KEY]
    return providers


def init_app(app: Flask) -> None:
    """Build the providers the configuration names."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.providers is already registered on this app")
    names = app.config["LLM_PROVIDER"]
    app.extensions[EXTENSION_KEY] = Providers(
        providers=tuple(build_provider(name, app.config) for name in names)
    )
