"""The founding rule, enforced: engines and sessionmakers come from zerg/db.py only,
and no module holds an engine or a session at import time."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.orm import scoped_session
from sqlalchemy.orm import sessionmaker

import zerg

PACKAGE_DIR = Path(zerg.__file__).parent
BUILDERS = frozenset(
    {"create_engine", "sessionmaker", "scoped_session", "make_engine", "make_sessionmaker"}
)
HELD = (Engine, Session, sessionmaker, scoped_session)


def builder_calls(source: str) -> list[tuple[int, str]]:
    """Find calls that build an engine, a sessionmaker or a Session directly."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name in BUILDERS or name == "Session":
            found.append((node.lineno, name))
    return found


def module_level_builder_calls(source: str) -> list[tuple[int, str]]:
    """Find builder calls that run at import time (outside any function body)."""
    found = []
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        found += builder_calls(ast.unparse(statement))
    return found


def package_modules() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_the_checks_see_a_violation() -> None:
    bad = "from sqlalchemy import create_engine\nengine = create_engine('sqlite://')\n"
    assert builder_calls(bad) == [(2, "create_engine")]
    assert module_level_builder_calls(bad) == [(1, "create_engine")]
    assert builder_calls("s = orm.sessionmaker(bind=e)") == [(1, "sessionmaker")]
    assert module_level_builder_calls("def f():\n    return Session()\n") == []


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_only_db_module_builds_engines_or_sessions(path: Path) -> None:
    source = path.read_text()
    if path == PACKAGE_DIR / "db.py":
        assert module_level_builder_calls(source) == []
    else:
        assert builder_calls(source) == [], f"{path} builds an engine or session"


def test_no_module_holds_an_engine_or_session_at_import_time() -> None:
    # Alembic runs env.py and the revision scripts itself, with its context set
    # up (env.py cannot be imported without one); the AST checks above read them.
    names = [
        info.name
        for info in pkgutil.walk_packages(zerg.__path__, "zerg.")
        if not info.name.startswith("zerg.migrations.")
    ]
    assert "zerg.db" in names and "zerg.api.agents" in names
    for name in names:
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            assert not isinstance(value, HELD), f"{name}.{attribute} is a {type(value).__name__}"
