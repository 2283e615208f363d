"""zerg: a self-hostable backend for an AI-agent platform.

The package is layered, and imports point down this list only: a module uses
its own layer and the ones below it, never one above, and no two modules
import each other (``tests/test_architecture.py`` keeps the list as data and
fails otherwise).

1. **transports** take a request, a frame, a command, a timer or a queued run,
   call the domain and answer: ``api/`` (the REST views, one blueprint per
   resource, and the websocket handler ``api/websocket.py``), ``web/`` (the
   browser UI), ``cli.py`` and ``serving.py`` (the ``flask`` commands and the
   serving process), ``auth.py``, ``origins.py`` and ``cors.py`` (who may call),
   ``runs/scheduler.py`` (the scheduler's jobs) and ``runs/execution.py`` (a
   worker's job: one queued run);
2. **domain**: every change to the data, once, as plain functions taking a
   session; what they announce goes out after the caller commits:
   ``agents.py``, ``conversations.py``, ``tickets.py``, ``idempotency.py`` and
   ``runs/`` (``states``, ``domain``, ``lifecycle``);
3. **services** the domain uses, which own no data: ``schemas/`` (the
   pydantic shapes, by resource), ``cron.py`` (schedules), ``providers/`` (the model
   services) and ``runs/pool.py`` (the worker threads);
4. **bus**: ``realtime/``, the event bus (in memory or through Redis) and the
   websocket hub; events are announced on a session and published once it
   commits, so the bus sits on storage;
5. **storage**: ``db.py`` (engines, sessions), ``dialects.py`` (what SQLite
   and PostgreSQL connections need), ``models.py`` (the tables),
   ``migrate.py`` and ``migrations/``, ``locks.py``;
6. **base**, for everyone: ``errors.py`` (problem+json), ``domain_errors.py``
   (what the domain refuses, in its own words: each transport maps them),
   ``config.py`` (settings), ``logs.py``.

:func:`create_app`, here, sits above them all and wires one ``init_app`` per
concern.
"""

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
