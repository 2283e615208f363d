"""``GET /api/models``: the LLM models the providers offer (the ORM is ``zerg.models``)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg.api.io import respond_rows
from zerg.api.operations import ok
from zerg.api.operations import operation
from zerg.providers import get_providers
from zerg.schemas import ModelOut

bp = Blueprint("models", __name__, url_prefix="/models")


@bp.get("")
@operation(
    "models",
    "List the models agents may name",
    ok(ModelOut, "Every model the configured providers offer.", many=True),
    database=False,
)
def list_models() -> Response:
    """List every model an agent may name."""
    return respond_rows(ModelOut, [vars(model) for model in get_providers().models()])
