"""The HTTP API: one blueprint per resource, all under /api."""

from __future__ import annotations

from flask import Blueprint
from flask import Flask

from zerg import ws
from zerg.api import admin
from zerg.api import agents
from zerg.api import fastlane
from zerg.api import health
from zerg.api import models
from zerg.api import openapi
from zerg.api import runs
from zerg.api import threads


def init_app(app: Flask) -> None:
    """Register the resource blueprints (the admin one only in development) and the fast lane."""
    # "/api/agents" and "/api/agents/" both answer, without a redirect.
    app.url_map.strict_slashes = False
    api = Blueprint("api", __name__, url_prefix="/api")
    for resource in (agents, threads, runs, models, health, openapi, ws):
        api.register_blueprint(resource.bp)
    if app.config["ENVIRONMENT"] == "development":
        api.register_blueprint(admin.bp)
    app.register_blueprint(api)
    fastlane.init_app(app)
