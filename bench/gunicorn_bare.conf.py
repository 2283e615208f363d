"""Gunicorn settings for the bare baseline: the project's own, minus zerg.

Loads ``gunicorn.conf.py`` from the repository root, so worker class, threads,
keep-alive, logging and ``WEB_CONCURRENCY`` are exactly what zerg is served
with, then swaps the app for ``bare_app:app`` and leaves out ``post_worker_init``
(zerg's drain on SIGTERM, which has nothing to drain here). Used by
``bench/http_bench.py``: ``.venv/bin/gunicorn -c bench/gunicorn_bare.conf.py``.
"""

from __future__ import annotations

import runpy
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
_PROJECT = runpy.run_path(str(_BENCH.parent / "gunicorn.conf.py"))

globals().update(
    {
        name: value
        for name, value in _PROJECT.items()
        if not name.startswith("_") and name.islower() and name != "post_worker_init"
    }
)
pythonpath = str(_BENCH)
wsgi_app = "bare_app:app"
