"""Development tooling. Registered only when ENVIRONMENT=development."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import jsonify

from zerg import db

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.post("/reset-database")
def reset_database() -> Response:
    """Drop and recreate every table."""
    db.drop_tables()
    db.create_tables()
    return jsonify(message="Database reset: all tables dropped and recreated.")
