"""``GET /api/models``: the LLM models the providers offer (the ORM is ``zerg.models``)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from zerg.api.io import respond_rows
from zerg.providers import get_providers
from zerg.schemas import ModelOut

bp = Blueprint("models", __name__, url_prefix="/models")


@bp.get("")
def list_models() -> Response:
    """List every model an agent may name."""
    return respond_rows(ModelOut, [vars(model) for model in get_providers().models()])
