"""The HTTP API: one blueprint per resource, all under /api."""

from __future__ import annotations

from flask import Blueprint
from flask import Flask

from zerg.api import admin
from zerg.api import agents
from zerg.api import health
from zerg.api import io
from zerg.api import llm_models
from zerg.api import mcp_servers
from zerg.api import openapi
from zerg.api import problems
from zerg.api import runs
from zerg.api import schedules
from zerg.api import threads
from zerg.api import tickets
from zerg.api import tools
from zerg.api import websocket


def init_app(app: Flask) -> None:
    """Register the resource blueprints (the admin one only in development)."""
    # "/api/agents" and "/api/agents/" both answer, without a redirect.
    app.url_map.strict_slashes = False
    api = Blueprint("api", __name__, url_prefix="/api")
    resources = (
        agents,
        threads,
        runs,
        tools,
        mcp_servers,
        schedules,
        llm_models,
        health,
        openapi,
        tickets,
        websocket,
    )
    for resource in resources:
        api.register_blueprint(resource.bp)
    if app.config["ENVIRONMENT"] == "development":
        api.register_blueprint(admin.bp)
    api.before_request(io.refuse_unknown_query)
    app.register_blueprint(api)
    problems.init_app(app)
