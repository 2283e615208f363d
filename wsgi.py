"""WSGI entry point: ``gunicorn wsgi:app``.

Only the ``flask`` command reads ``.env`` by itself, so this file does it for
every other server. It also starts the app's background services (run
recovery, the scheduler) in the process that serves, after checking that the
database is at head: a worker on a database behind refuses to boot, naming
``flask db upgrade``.
"""

from __future__ import annotations

from dotenv import load_dotenv

from zerg import create_app
from zerg import serving

load_dotenv()
app = create_app()
serving.start(app)
