"""Cross-origin access for browser front ends, limited to an allow-list.

With ``CORS_ORIGINS`` empty (the default) no CORS headers are sent and
browsers keep other origins out. List origins (``https://app.example``) to
let those front ends call the API; ``*`` allows any origin. Credentials are
bearer tokens in a header, never cookies, so no credentialed mode is needed.
"""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import request

ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key"
# Response headers a script may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = "Idempotent-Replayed"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
PREFLIGHT_MAX_AGE = "600"


def init_app(app: Flask) -> None:
    """Answer allowed origins with CORS headers, preflights included."""
    origins = frozenset(app.config["CORS_ORIGINS"])
    if not origins:
        return

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is None or not request.path.startswith("/api"):
            return response
        response.vary.add("Origin")
        if "*" not in origins and origin not in origins:
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response
