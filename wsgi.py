"""WSGI entry point: ``gunicorn wsgi:app``.

Only the ``flask`` command reads ``.env`` by itself, so this file does it for
every other server.
"""

from __future__ import annotations

from dotenv import load_dotenv

from zerg import create_app

load_dotenv()
app = create_app()
