"""Refuse what another site's page makes a browser send: cross-site writes and websockets.

Any page can make a browser POST a form, or a body-less request, to any
server without a preflight, and open a websocket to it; the browser then
says where the page came from in ``Origin`` (and, in current browsers,
``Sec-Fetch-Site``). So every unsafe method (POST, PUT, PATCH, DELETE) and
every websocket handshake is refused (403) when:

- ``Origin`` is neither the server's own nor listed in ``CORS_ORIGINS``
  (``*`` there lets any origin in); ``Origin: null``, what sandboxed frames
  and redirects send, is never anyone's own; or
- ``Sec-Fetch-Site: cross-site``, unless the origin is listed.

The server's own origin is the request's scheme and ``Host``, as Flask reads
them: zerg configures no ProxyFix, so ``X-Forwarded-*`` headers are ignored.
Behind a proxy that terminates TLS or rewrites ``Host``, list the public
origin (``https://zerg.example``) in ``CORS_ORIGINS``. Clients that send
neither header (curl, SDKs, scripts) are no one's page, and pass. Reads are
not refused: without CORS headers a page cannot read what it fetched.

The hook runs before every other one and reads no body and no database. It
also reads the request's host first, which is when Flask checks it against
``TRUSTED_HOSTS`` (DNS rebinding), so a foreign host is refused before
anything else looks at the request.
"""

from __future__ import annotations

import logging
import socket

from flask import Flask
from flask import request
from werkzeug.exceptions import SecurityError

from zerg.errors import APIError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": ":80", "https": ":443"}
# Addresses that mean "every interface": the machine's name stands in for them.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})

log = logging.getLogger(__name__)


def normalise(origin: str) -> str:
    """Write an origin the way ``Origin`` does: lower case, no default port."""
    origin = origin.strip().lower()
    port = DEFAULT_PORTS.get(origin.partition("://")[0])
    return origin.removesuffix(port) if port else origin


def own_origin() -> str:
    """This request's scheme and host: the origin of a page this server served."""
    return normalise(f"{request.scheme}://{request.host}")


def cross_site_reason(own: str, allowed: frozenset[str]) -> str | None:
    """Say why this request comes from another site's page, or None if it does not."""
    origin = request.headers.get("Origin")
    listed = origin is not None and origin != "null" and ("*" in allowed or origin in allowed)
    if origin is not None and not listed and normalise(origin) != own:
        return f"its Origin {origin} is neither this server's ({own}) nor listed in CORS_ORIGINS"
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site" and not listed:
        return (
            "the browser marked it Sec-Fetch-Site: cross-site and its Origin is not "
            "listed in CORS_ORIGINS"
        )
    return None


def trusted_host() -> str:
    """Return the request's host, refusing (400) one that TRUSTED_HOSTS does not list."""
    try:
        return request.host
    except SecurityError as exc:
        raise APIError(
            400,
            f"{exc.description} This server answers only for the hosts in TRUSTED_HOSTS; "
            "add this one there to serve it.",
        ) from None


def trust_served_host(app: Flask, host: str) -> None:
    """Trust the host a development server was told to serve on, when hosts are checked.

    Called by ``flask serve`` before it serves; an address meaning every
    interface stands for the machine's own names.
    """
    trusted = app.config["TRUSTED_HOSTS"]
    if trusted is None:
        return
    names = [socket.gethostname()] if host in WILDCARD_HOSTS else [host]
    app.config["TRUSTED_HOSTS"] = list(dict.fromkeys([*trusted, *names]))
    log.info("answering for the hosts %s (TRUSTED_HOSTS)", ", ".join(app.config["TRUSTED_HOSTS"]))


def init_app(app: Flask) -> None:
    """Refuse cross-site writes and websocket handshakes (403) before any other hook."""
    allowed = frozenset(app.config["CORS_ORIGINS"])

    @app.before_request
    def refuse_cross_site() -> None:
        trusted_host()
        rule = request.url_rule
        if request.method not in UNSAFE_METHODS and not (rule is not None and rule.websocket):
            return
        reason = cross_site_reason(own_origin(), allowed)
        if reason is not None:
            raise APIError(
                403,
                f"Cross-site request refused: {reason}. A page may call this API only "
                "from this server's own origin or one listed in CORS_ORIGINS.",
            )
