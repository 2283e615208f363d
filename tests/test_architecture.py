"""The founding rules, enforced.

Engines and sessionmakers come from zerg/db.py only, and no module holds an
engine or a session at import time. The layers point down: transports (the
API, the websocket) call the domain and build no rows or SQL of their own; the
domain never reaches back up; nothing answers a request in front of Flask.
"""

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


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, and every name it imports from one (``flask.request``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    return ".".join(part for part in relative.parts if part != "__init__")


DOMAIN = [
    PACKAGE_DIR / "agents.py",
    PACKAGE_DIR / "conversations.py",
    PACKAGE_DIR / "tickets.py",
] + sorted((PACKAGE_DIR / "runs").rglob("*.py"))
TRANSPORTS = [
    *sorted((PACKAGE_DIR / "api").rglob("*.py")),
    *sorted((PACKAGE_DIR / "web").rglob("*.py")),
    PACKAGE_DIR / "api" / "websocket.py",
]


def test_the_import_checks_see_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from flask import request\nimport zerg.api.agents\nfrom sqlalchemy import select\n"
    )
    assert {"flask.request", "zerg.api.agents", "sqlalchemy.select"} <= imports_of(bad)


@pytest.mark.parametrize("path", DOMAIN, ids=module_name)
def test_the_domain_never_reaches_up_to_its_transports(path: Path) -> None:
    """Domain code is called by transports; it never reads a request or calls one back."""
    for name in imports_of(path):
        assert name != "flask.request", f"{module_name(path)} reads the request"
        assert not name.startswith(("zerg.api", "zerg.web")), f"{module_name(path)} imports {name}"


@pytest.mark.parametrize("path", package_modules(), ids=module_name)
def test_nothing_below_the_api_imports_it(path: Path) -> None:
    if module_name(path).startswith("zerg.api") or path == PACKAGE_DIR / "__init__.py":
        return
    assert not any(name.startswith("zerg.api") for name in imports_of(path))


@pytest.mark.parametrize("path", TRANSPORTS, ids=module_name)
def test_transports_build_no_rows_or_sql(path: Path) -> None:
    """Views and the websocket parse and answer; rows and SQL are the domain's."""
    for name in imports_of(path):
        assert name.split(".")[0] != "sqlalchemy", f"{module_name(path)} imports {name}"
        assert not name.startswith("zerg.models"), f"{module_name(path)} imports {name}"


@pytest.mark.parametrize("path", package_modules(), ids=module_name)
def test_nothing_answers_in_front_of_flask(path: Path) -> None:
    """No WSGI middleware wraps the app: every request meets Flask's hooks and one session."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign):
            targets = [ast.unparse(target) for target in node.targets]
            assert not any(target.endswith(".wsgi_app") for target in targets), module_name(path)
