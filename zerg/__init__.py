"""zerg: a self-hostable backend for an AI-agent platform."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from zerg import api
from zerg import auth
from zerg import cli
from zerg import config as settings
from zerg import cors
from zerg import db
from zerg import errors
from zerg import idempotency
from zerg import origins
from zerg import providers
from zerg import web
from zerg.realtime import backend
from zerg.realtime import hub
from zerg.runs import execution
from zerg.runs import scheduler


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build an app: configuration, then one ``init_app`` per concern, then the API.

    ``config`` wins over every other source; tests pass their database and
    environment here rather than changing ``app.config`` afterwards, because the
    engine is built from it inside this function.
    """
    app = Flask(__name__, instance_relative_config=True)
    settings.load(app, config)
    errors.init_app(app)
    origins.init_app(app)
    cors.init_app(app)
    auth.init_app(app)
    db.init_app(app)
    idempotency.init_app(app)
    backend.init_app(app)
    hub.init_app(app)
    providers.init_app(app)
    execution.init_app(app)
    scheduler.init_app(app)
    api.init_app(app)
    web.init_app(app)
    cli.init_app(app)
    return app
