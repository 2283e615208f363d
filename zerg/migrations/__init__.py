"""Alembic's script directory: ``env.py``, the revision template and ``versions/``.

It is a package so that an installed wheel carries it; ``zerg.migrate`` points
Alembic at it as ``zerg:migrations`` and is the only way to run it.
"""
