"""Logging of a serving process: one line per record, as text or as JSON.

Configured by the serving entry points (``flask serve``, ``wsgi.py``), never
by ``create_app``: handlers and levels are the process's, and a test or a CLI
command should not change them. Under gunicorn, ``gunicorn.conf.py`` gives
gunicorn's own loggers (errors, access) the same format.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC
from datetime import datetime
from typing import Any

from flask import Flask

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter ``LOG_FORMAT`` names: ``json`` or ``text``."""
    return JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class _ZergHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so configuring again replaces it."""


def configure(app: Flask) -> None:
    """Send every logger's records at ``LOG_LEVEL`` or above to stderr, as ``LOG_FORMAT`` says."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ZergHandler)]:
        root.removeHandler(handler)
    handler = _ZergHandler(sys.stderr)
    handler.setFormatter(formatter(app.config["LOG_FORMAT"]))
    root.addHandler(handler)
    root.setLevel(app.config["LOG_LEVEL"].upper())
    # Alembic narrates every check of the schema at INFO, and APScheduler every
    # job it runs, twice; zerg says what it did (a fire, a purge) itself.
    if app.config["LOG_LEVEL"] != "debug":
        for chatty in ("alembic", "apscheduler.executors", "apscheduler.scheduler"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
