"""The founding rules, enforced.

Engines and sessionmakers come from zerg/db.py only, and no module holds an
engine or a session at import time. The layers point down: every module
belongs to one layer of LAYERS, and none imports a module of a higher layer,
even inside a function, nor one that imports it back (no import cycle, each
reported as its path). Transports (the API, the websocket) call the domain and
build no rows or SQL of their own; nothing under them reads the request; and
nothing answers a request in front of Flask.
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


# The layers, top to bottom. A module may import modules of its own layer and
# of the layers below it, never of one above. A name stands for that module and,
# if it is a package, every module under it, unless a longer name says otherwise
# (``zerg.runs`` is domain, ``zerg.runs.scheduler`` a transport).
LAYERS: dict[str, tuple[str, ...]] = {
    # The app factory (zerg/__init__.py, this name alone): it wires every layer.
    "app": ("zerg",),
    # Where a request, a frame, a command, a timer or a queued run comes in:
    # they parse it, call the domain and answer.
    "transports": (
        "zerg.api",  # the REST views, the websocket handler, the OpenAPI document
        "zerg.web",  # the browser UI
        "zerg.cli",
        "zerg.serving",  # the serving process `flask serve` starts and stops
        "zerg.auth",  # who may call: checked before any view or handshake
        "zerg.origins",
        "zerg.cors",
        "zerg.runs.scheduler",  # the scheduler's jobs, and the executor that runs them
        "zerg.runs.ticks",
        "zerg.runs.execution",  # a worker's job: one queued run, begun, streamed, finished
        "zerg.runs.streaming",  # a worker relaying one model reply as it comes
        "zerg.runs.tool_round",  # a worker running one round's tool calls
    ),
    # Every change to the data, once: plain functions taking a session.
    "domain": (
        "zerg.agents",
        "zerg.agent_tools",  # which tools an agent may call, and a registry for its run
        "zerg.mcp_servers",  # the MCP servers tools come from
        "zerg.conversations",
        "zerg.tickets",
        "zerg.idempotency",
        "zerg.runs",
    ),
    # What the domain uses and owns no data: shapes, schedules, models, workers.
    "services": (
        "zerg.schemas",
        "zerg.cron",
        "zerg.providers",
        "zerg.runs.pool",
        "zerg.tools",  # agent tools: the registry, the built-ins, the MCP client
    ),
    # The event bus and the websocket hub. Below the services, and above
    # storage: ``events.announce`` publishes once a session commits.
    "bus": ("zerg.realtime",),
    "storage": (
        "zerg.db",
        "zerg.dialects",
        "zerg.commit_order",
        "zerg.models",
        "zerg.migrate",
        "zerg.migrations",
        "zerg.locks",
    ),
    # What every layer may use: the error format, the domain's refusals (which
    # storage raises too: a row not found), the settings, the log format.
    "base": ("zerg.errors", "zerg.domain_errors", "zerg.config", "zerg.logs"),
}
RANK = {layer: rank for rank, layer in enumerate(LAYERS)}
# Imports that run up a layer, each with the reason it stays for now.
# Empty: add an entry only with a comment saying why and what would remove it.
ALLOWED_UPWARD: frozenset[tuple[str, str]] = frozenset()
# Modules below the transports that read the request, each with its reason.
READS_THE_REQUEST: frozenset[str] = frozenset()


def layer_of(module: str) -> str | None:
    """Return the layer of the longest name in LAYERS that is ``module`` or holds it."""
    best: tuple[int, str] | None = None
    for layer, names in LAYERS.items():
        for name in names:
            # "zerg" stands for the factory only, not for every module under it.
            holds = module.startswith(f"{name}.") and name != "zerg"
            if (module == name or holds) and (best is None or len(name) > best[0]):
                best = (len(name), layer)
    return best[1] if best else None


def zerg_imports(source: str, package: str, known: frozenset[str]) -> set[str]:
    """Return the zerg modules ``source`` imports, at its top or inside a function.

    ``package`` is the package the module's relative imports start from.
    ``from zerg import cron`` imports the module ``zerg.cron``, not the package
    ``zerg``: a name is taken for a module whenever one is called that.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = parts[: len(parts) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found & known


def import_graph() -> dict[str, set[str]]:
    """Map every zerg module to the zerg modules it imports."""
    known = frozenset(module_name(path) for path in package_modules())
    graph = {}
    for path in package_modules():
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = zerg_imports(path.read_text(), package, known)
    return graph


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Return every (importer, imported) pair where the imported module is in a higher layer."""
    return {
        (module, imported)
        for module, imports in graph.items()
        for imported in imports
        if RANK[layer_of(imported) or "app"] < RANK[layer_of(module) or "app"]
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return one cycle, as a path back to its start, for each back edge of a depth-first walk."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in done:
                visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    return cycles


def test_the_import_checks_see_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from flask import request\nimport zerg.api.agents\nfrom sqlalchemy import select\n"
    )
    assert {"flask.request", "zerg.api.agents", "sqlalchemy.select"} <= imports_of(bad)


def test_the_layer_checks_see_a_violation() -> None:
    known = frozenset({"zerg", "zerg.db", "zerg.agents", "zerg.cron", "zerg.api.io"})
    lazy = "def f():\n    from zerg import agents\n"
    assert zerg_imports(lazy, "zerg", known) == {"zerg.agents"}
    assert zerg_imports("from zerg import cron, create_app", "zerg", known) == {"zerg.cron", "zerg"}
    assert zerg_imports("from ..io import x\nimport os", "zerg.api.views", known) == {"zerg.api.io"}
    assert layer_of("zerg.runs.scheduler") == "transports"
    assert layer_of("zerg.runs.states") == "domain"
    assert layer_of("zerg.nowhere") is None
    graph = {
        "zerg.db": {"zerg.agents"},
        "zerg.agents": {"zerg.db", "zerg.cron"},
        "zerg.cron": set(),
    }
    assert upward_imports(graph) == {("zerg.db", "zerg.agents")}
    assert import_cycles(graph) == [["zerg.agents", "zerg.db", "zerg.agents"]]
    assert import_cycles({"zerg.a": {"zerg.b"}, "zerg.b": {"zerg.c"}, "zerg.c": {"zerg.a"}}) == [
        ["zerg.a", "zerg.b", "zerg.c", "zerg.a"]
    ]


@pytest.mark.parametrize("path", package_modules(), ids=module_name)
def test_every_module_has_a_layer(path: Path) -> None:
    assert layer_of(module_name(path)) is not None, f"add {module_name(path)} to LAYERS"


def test_imports_point_down() -> None:
    """No module imports one from a higher layer (LAYERS), not even inside a function."""
    upward = upward_imports(import_graph())
    unexplained = sorted(upward - ALLOWED_UPWARD)
    assert unexplained == [], "\n".join(
        f"{module} ({layer_of(module)}) imports {imported} ({layer_of(imported)})"
        for module, imported in unexplained
    )
    assert ALLOWED_UPWARD <= upward, f"no longer needed: {sorted(ALLOWED_UPWARD - upward)}"


def test_no_import_cycles() -> None:
    """No zerg module imports, directly or through others, a module that imports it."""
    cycles = import_cycles(import_graph())
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("path", package_modules(), ids=module_name)
def test_nothing_below_the_transports_reads_the_request(path: Path) -> None:
    """The domain and what it stands on are called by transports; they never read a request."""
    name = module_name(path)
    if RANK[layer_of(name) or "app"] <= RANK["transports"] or name in READS_THE_REQUEST:
        return
    assert "flask.request" not in imports_of(path), f"{name} reads the request"


def test_every_request_reader_excused_still_reads_it() -> None:
    for name in READS_THE_REQUEST:
        path = PACKAGE_DIR.parent / f"{name.replace('.', '/')}.py"
        assert "flask.request" in imports_of(path), f"{name} no longer needs its excuse"


@pytest.mark.parametrize("path", package_modules(), ids=module_name)
def test_nothing_below_the_api_imports_it(path: Path) -> None:
    if module_name(path).startswith("zerg.api") or path == PACKAGE_DIR / "__init__.py":
        return
    assert not any(name.startswith("zerg.api") for name in imports_of(path))


# The request transports: the REST views, the websocket handler and the UI.
REQUEST_TRANSPORTS = sorted((PACKAGE_DIR / "api").rglob("*.py")) + sorted(
    (PACKAGE_DIR / "web").rglob("*.py")
)


@pytest.mark.parametrize("path", REQUEST_TRANSPORTS, ids=module_name)
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
