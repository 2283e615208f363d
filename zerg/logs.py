"""Logging of a serving process: one line per record, as text or as JSON, and no secrets.

Configured by the serving entry points (``flask serve``, ``wsgi.py``), never
by ``create_app``: handlers and levels are the process's, and a test or a CLI
command should not change them. Under gunicorn, ``gunicorn.conf.py`` gives
gunicorn's own loggers (errors, access) the same format.

Every handler installed here, and gunicorn's, carries :class:`RedactSecrets`:
the werkzeug and gunicorn access lines write the request line with its
query, and a websocket's query may hold a ticket (or, from an old client, a
token, refused but still sent). One filter on the handlers covers every way
a URL reaches a line: access lines whatever their format, gunicorn's error
lines ("Error handling request <uri>") and zerg's own.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from flask import Flask

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Query parameters whose values are secrets, however their names are spelt.
SECRET_PARAMETERS = frozenset({"token", "ticket"})
REDACTED = "[redacted]"
# A parameter's name: after "?", "&", a space or a quote, or at the start (a bare query).
_PARAMETER_NAME = re.compile(r"(?:(?<=[?&\s\"'])|^)([^=&\s\"'?#]+)=")
_VALUE_END = re.compile(r"[&\s\"'#\x1b]|$")
_BEARER = re.compile(r"\b(bearer)\s+[^\s\"',]+", re.IGNORECASE)


def _is_secret(name: str) -> bool:
    return unquote_plus(name).strip().lower() in SECRET_PARAMETERS


def _value_end(text: str, start: int) -> int:
    end = _VALUE_END.search(text, start)
    return end.start() if end else len(text)


def redact(text: str) -> str:
    """Blank out the values of ``token``/``ticket`` query parameters and bearer tokens.

    Names are compared as a server reads them (``%74oken`` is ``token``); a
    value runs to the next ``&``, space or quote, as werkzeug reads it.
    """
    if "=" in text:
        pieces, done = [], 0
        for match in _PARAMETER_NAME.finditer(text):
            if match.start() >= done and _is_secret(match[1]):
                pieces += [text[done : match.end()], REDACTED]
                done = _value_end(text, match.end())
        text = "".join(pieces) + text[done:]
    return _BEARER.sub(rf"\1 {REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Rewrite a record whose line would carry a secret (see :func:`redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


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
    """Send every logger's records at ``LOG_LEVEL`` or above to stderr, as ``LOG_FORMAT`` says.

    ``flask serve``'s request lines (werkzeug's logger) go through this handler too.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ZergHandler)]:
        root.removeHandler(handler)
    handler = _ZergHandler(sys.stderr)
    handler.setFormatter(formatter(app.config["LOG_FORMAT"]))
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(app.config["LOG_LEVEL"].upper())
    # Alembic narrates every check of the schema at INFO, APScheduler every
    # job it runs, twice, and httpx every model request, its URL whole (a
    # base URL's password included); zerg says what it did (a fire, a purge,
    # a run's start and end) itself.
    if app.config["LOG_LEVEL"] != "debug":
        chatty_loggers = ("alembic", "apscheduler.executors", "apscheduler.scheduler", "httpx")
        for chatty in chatty_loggers:
            logging.getLogger(chatty).setLevel(logging.WARNING)
