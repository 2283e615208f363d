"""What a serving process runs besides requests: recovery, scheduler, run workers.

``create_app`` builds these but starts nothing, so tests and CLI commands stay
free of background threads. The serving entry points (``flask serve`` and
``wsgi.py``) call :func:`start` once the app is built, in the process that
will serve it; :func:`stop` runs at exit.
"""

from __future__ import annotations

import atexit
import logging

from flask import Flask

from zerg import events
from zerg import runner
from zerg import scheduler

log = logging.getLogger(__name__)


def start(app: Flask) -> None:
    """Recover runs a dead process left behind, then start the scheduler if enabled."""
    runner.recover_interrupted(app)
    if app.config["SCHEDULER_ENABLED"]:
        scheduler.get_scheduler(app).start()
    atexit.register(stop, app)


def stop(app: Flask) -> None:
    """Stop the scheduler, the run workers (running runs are cancelled) and the event bus."""
    scheduler.get_scheduler(app).shutdown()
    runner.get_runner(app).shutdown(wait=True)
    events.get_bus(app).close()
