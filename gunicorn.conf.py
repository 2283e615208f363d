"""Gunicorn settings for serving zerg: ``gunicorn -c gunicorn.conf.py``.

gevent workers by default (``GUNICORN_WORKER_CLASS=gthread`` for the old
model): an open websocket or a run waiting on its model is a greenlet, which
costs memory, not a thread, so one worker holds thousands of them while it
keeps answering HTTP. Several workers, because one process is one core.

gevent must patch the standard library before anything imports a database
driver or ``ssl`` user: psycopg picks its wait function when it is imported,
and would otherwise block the whole worker while it waits on a lock. The
gevent worker patches first thing in the worker, so the master never imports
zerg's drivers: its start-up check runs in a forked child (``refuse_to_start``),
and each worker imports ``wsgi.py`` after the fork (no ``preload_app``), so it
also builds its own engine and pool: connections are never shared across a
fork. The master itself is never patched: gevent's handling of SIGCHLD would
compete with the arbiter's reaping of its workers.

Connections: each worker accepts ``WS_MAX_CONNECTIONS`` websockets (zerg
answers the next handshake 503 before the upgrade) plus
``GUNICORN_HTTP_CONNECTIONS`` for plain requests, so websockets never starve
HTTP. ``keepalive`` also bounds how long a connection may take to send its
first request, which is what limits slow or idle handshakes. Environment
variables override the defaults below; README's Production section explains
them.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import Any

from dotenv import load_dotenv
from gunicorn import glogging

_host, _port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
bind = os.environ.get("BIND", f"{_host}:{_port}")
wsgi_app = "wsgi:app"


def _whole(name: str, default: int) -> int:
    """Read one of zerg's counts; a bad one is left for zerg's check to refuse in one line."""
    text = os.environ.get(name, "").strip()
    return int(text) if text.isdigit() else default


worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gevent: the connections one worker serves at once, websockets and HTTP.
worker_connections = _whole("WS_MAX_CONNECTIONS", 10_000) + int(
    os.environ.get("GUNICORN_HTTP_CONNECTIONS", "1000")
)
# gthread only: one thread per open websocket plus headroom for plain requests.
threads = int(os.environ.get("GUNICORN_THREADS", "128"))
# Seconds a worker has after SIGTERM: websockets are closed at once (1012,
# reconnect), running runs get most of this to finish, then are interrupted.
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
RUN_GRACE = max(graceful_timeout - 5, 0)
# Seconds an idle keep-alive connection is kept, and (gevent) the most a new
# connection may take to send its first request: long enough for a burst of
# thousands of handshakes to be read, short enough that idle sockets that
# never ask for anything are let go.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "20"))
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
    let a server upgrade its database (development SQLite), this check does it
    once, before the workers race to. The app is built in a forked child that
    exits when it has checked, so that the master (whose memory every worker
    inherits) never imports a driver.
    """
    child = os.fork()
    if child == 0:
        os._exit(_check(workers))
    _, status = os.waitpid(child, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(1)


def _check(workers: int) -> int:
    """Build the app and check it can serve from ``workers`` processes; 0 if so."""
    from zerg import create_app
    from zerg import migrate
    from zerg import serving
    from zerg.errors import StartupError

    load_dotenv()
    try:
        app = create_app()
        serving.check_processes(app, workers)
        migrate.prepare(app)
    except StartupError as exc:
        exc.show()
        return 1
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    finally:
        sys.stderr.flush()
    return 0


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """Check once gunicorn knows its worker count (``-w`` included), before it logs a line.

    ``old_value`` is None only for that first setting; TTIN/TTOU at run time
    are the operator's to get right.
    """
    if old_value is None:
        refuse_to_start(new_value)


def _in_background(target: Any, *args: Any) -> None:
    """Start ``target`` beside the signal handler that asks for it.

    Under gevent the handler may run in the hub, where starting a thread (a
    greenlet that is waited for) raises ``BlockingSwitchOutError``; spawning
    a greenlet does not wait.
    """
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            import gevent

            gevent.spawn(target, *args)
            return
    threading.Thread(target=target, args=args, name="zerg-drain").start()


def post_worker_init(worker: Any) -> None:
    """Freeze what the loaded app holds; drain zerg when the worker is told to stop.

    Gunicorn waits ``graceful_timeout`` for open requests, and a websocket is
    an open request until it closes: so on SIGTERM (and SIGINT/SIGQUIT) zerg
    closes its websockets, gives runs their grace and releases its locks and
    connections, in the background, while gunicorn's own handler stops
    accepting.
    """
    from zerg import serving

    # Everything alive now (the modules, the app, its schemas and clients:
    # about 250,000 objects) lives as long as the worker. Frozen, the
    # collector's full passes skip them. Each pass had stopped a worker for
    # 160-330 ms in the fan-out benchmark (the tail of every latency measured
    # under load); now it costs what the connections and runs in flight add.
    gc.freeze()
    app = worker.wsgi
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        previous = signal.getsignal(signum)

        def drain(number: int, frame: Any, previous: Any = previous) -> None:
            _in_background(serving.stop, app, RUN_GRACE)
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, drain)


def worker_exit(server: Any, worker: Any) -> None:
    """Give the objects frozen at start back to the collector before the interpreter ends.

    Left frozen, they outlive the final collection and are torn down with
    the modules, when callbacks such as logging's handler cleanup find
    gevent half gone and print tracebacks into the log.
    """
    gc.unfreeze()
