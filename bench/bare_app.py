"""The floor for the HTTP benchmarks: a bare WSGI app returning fixed JSON.

No framework, no database, no hooks: one plain function that answers every
request with the same small JSON body (the size of ``GET /api/health``'s). It is
served by gunicorn with the project's own settings (``bench/gunicorn_bare.conf.py``
loads ``gunicorn.conf.py`` and keeps everything but zerg's drain hook), so the
ratio zerg / bare is what zerg costs on top of gunicorn itself. Started by
``bench/http_bench.py``; to poke at it by hand:

    .venv/bin/gunicorn -c bench/gunicorn_bare.conf.py
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

BODY = b'{"status":"ok","database":"ok","instance":"0123456789abcdef"}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer anything with the fixed JSON body (a POST's body is read and dropped)."""
    length = environ.get("CONTENT_LENGTH")
    if length:
        environ["wsgi.input"].read(int(length))
    start_response("200 OK", HEADERS)
    return [BODY]
