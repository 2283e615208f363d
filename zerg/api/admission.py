"""Requests that queue runs wait their turn to start one: the ``@starts_runs`` decorator.

The wait happens before the view touches the database (and before an
``Idempotency-Key`` is claimed), so a request in line holds no connection
and no lock; see :meth:`zerg.runs.pool.Runner.admission` for why runs are
admitted at all, and ``zerg.api.problems`` for the 503 a request gets when
its wait runs out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec

from flask import Response
from flask import request

from zerg.runs.pool import get_runner

P = ParamSpec("P")


def starts_runs(
    when: Callable[[], bool] = lambda: True,
) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """Let the view run once this process may start one more run (if ``when()`` says it may)."""

    def decorate(view: Callable[P, Response]) -> Callable[P, Response]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            if not when():
                return view(*args, **kwargs)
            with get_runner().admission():
                return view(*args, **kwargs)

        return wrapper

    return decorate


def body_asks_for_run() -> bool:
    """Tell whether a JSON body has a ``run`` (a message sent to be answered)."""
    body = request.get_json(silent=True)
    return isinstance(body, dict) and body.get("run") is not None
