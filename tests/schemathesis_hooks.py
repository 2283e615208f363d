"""Hooks for schemathesis's own command in test_fuzz's stateful pass (``SCHEMATHESIS_HOOKS``).

Generated Idempotency-Key values are short and repeat ("0", "A"), and a key
sent again with another body is rightly refused (422, ``idempotency_key_reused``),
which schemathesis would report as valid data rejected. Each request gets
its generated key with a number no other request of the run has, so every
step of a sequence is judged on its own; the keys stay within the header's
pattern and length.
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis

HEADER = "Idempotency-Key"
_numbers = itertools.count()


@schemathesis.hook
def map_headers(context: Any, headers: dict[str, str] | None) -> dict[str, str] | None:
    if headers and HEADER in headers:
        headers[HEADER] = f"{headers[HEADER][:200]}-{next(_numbers)}"
    return headers
