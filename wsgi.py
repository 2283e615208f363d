"""WSGI entry point: ``gunicorn wsgi:app``.

Only the ``flask`` command reads ``.env`` by itself, so this file does it for
every other server. It also starts the app's background services (run
recovery, the scheduler, the event listener) in the process that serves,
after checking that the database is at head: a worker on a database behind,
or with a bad setting, refuses to boot with one line saying why.
"""

from __future__ import annotations

from dotenv import load_dotenv

from zerg import create_app
from zerg import logs
from zerg import serving
from zerg.errors import StartupError

load_dotenv()
try:
    app = create_app()
    logs.configure(app)
    serving.start(app)
except StartupError as exc:
    exc.show()
    # Gunicorn's "worker failed to boot": its master stops, rather than
    # starting new workers that would fail the same way.
    raise SystemExit(3) from None
