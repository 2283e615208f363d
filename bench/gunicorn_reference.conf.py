"""Gunicorn settings for the reference app: the bare baseline's, serving ``reference_app:app``.

Used by ``bench/http_bench.py``: ``.venv/bin/gunicorn -c bench/gunicorn_reference.conf.py``
(with ``DATABASE_URL`` naming the file zerg serves).
"""

from __future__ import annotations

import runpy
from pathlib import Path

_BARE = runpy.run_path(str(Path(__file__).resolve().with_name("gunicorn_bare.conf.py")))

globals().update(
    {name: value for name, value in _BARE.items() if not name.startswith("_") and name.islower()}
)
wsgi_app = "reference_app:app"
