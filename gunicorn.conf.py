"""Gunicorn settings for serving zerg: ``gunicorn -c gunicorn.conf.py``.

gthread workers, because every websocket holds a thread for its whole life
(flask-sock is synchronous), and several of them, because one process is one
GIL. Each worker imports ``wsgi.py`` after the fork (no ``preload_app``), so
every worker builds its own engine and pool: connections are never shared
across a fork. Environment variables override the defaults below.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from dotenv import load_dotenv
from gunicorn import glogging

_host, _port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
bind = os.environ.get("BIND", f"{_host}:{_port}")
wsgi_app = "wsgi:app"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# One thread per open websocket plus headroom for plain requests.
threads = int(os.environ.get("GUNICORN_THREADS", "128"))
# Seconds a worker has after SIGTERM: websockets are closed at once (1012,
# reconnect), running runs get most of this to finish, then are interrupted.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
RUN_GRACE = max(graceful_timeout - 5, 0)
keepalive = 5
# One access line per request on stdout by default; ACCESS_LOG names a file,
# or is set empty to turn it off.
accesslog = os.environ.get("ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


class Logger(glogging.Logger):
    """gunicorn's own lines (errors, access) without secrets, and as JSON with LOG_FORMAT=json.

    The access line's request line keeps its query (``initial_topics`` tells
    an operator something), but the values of ``token`` and ``ticket`` are
    written as ``[redacted]``, as is any bearer token, whatever the format.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from zerg.logs import JSONFormatter
        from zerg.logs import RedactSecrets

        as_json = os.environ.get("LOG_FORMAT", "text").strip().lower() == "json"
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactSecrets())
                if as_json:
                    handler.setFormatter(JSONFormatter())


logger_class = Logger


def refuse_to_start(workers: int) -> None:
    """Exit with one line, before any worker boots, if zerg could not serve as configured.

    The workers would each fail the same way (a bad setting, a database that
    cannot be reached or is not at head), or worse, start and split events
    between them (the in-memory bus with several workers). Where the settings
    let a server upgrade its database (development SQLite), the master does it
    once, before the workers race to.
    """
    from zerg import create_app
    from zerg import db
    from zerg import migrate
    from zerg import serving
    from zerg.errors import StartupError

    load_dotenv()
    try:
        app = create_app()
        serving.check_processes(app, workers)
        try:
            migrate.prepare(app)
        finally:
            # No connection of the master's may be inherited by the workers.
            db.get_database(app).engine.dispose()
    except StartupError as exc:
        exc.show()
        raise SystemExit(1) from None


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """Check once gunicorn knows its worker count (``-w`` included), before it logs a line.

    ``old_value`` is None only for that first setting; TTIN/TTOU at run time
    are the operator's to get right.
    """
    if old_value is None:
        refuse_to_start(new_value)


def post_worker_init(worker: Any) -> None:
    """Drain zerg when the worker is told to stop, then let gunicorn finish.

    Gunicorn waits ``graceful_timeout`` for open requests, and a websocket is
    an open request until it closes: so on SIGTERM (and SIGINT/SIGQUIT) zerg
    closes its websockets, gives runs their grace and releases its locks and
    connections, in a thread, while gunicorn's own handler stops accepting.
    """
    from zerg import serving

    app = worker.wsgi
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(signum)

        def drain(number: int, frame: Any, previous: Any = previous) -> None:
            threading.Thread(target=serving.stop, args=(app, RUN_GRACE), name="zerg-drain").start()
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, drain)
