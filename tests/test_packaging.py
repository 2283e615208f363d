"""zerg as a wheel: built from the package files alone, installed, run from elsewhere.

An editable install (``make``) serves the checkout, so a module or a page that
setup.cfg forgets to ship goes unnoticed there. This test builds the wheel from
a copy of exactly what the build reads, installs it into a new virtual
environment, and runs the README's commands from a folder that is not the
checkout: the database is migrated, the server answers, the UI and its assets
load.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import local_server

ROOT = Path(__file__).resolve().parents[1]
# What the build reads: the package and its metadata (setup.cfg names README.md).
BUILD_INPUTS = ("zerg", "setup.cfg", "pyproject.toml", "README.md")


def build_wheel(tmp_path: Path) -> Path:
    """Build zerg's wheel from a copy of the build's inputs (the checkout stays clean)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    dist = tmp_path / "dist"
    # No build isolation: setuptools and wheel come from the test extra, so
    # this needs no network.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("zerg-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    """Make a new virtual environment holding the wheel; return its Python.

    zerg's dependencies are lent from this environment by a ``.pth`` line,
    which puts its site-packages after the new one's: ``zerg`` itself comes
    from the wheel, never from the editable install here (whose own ``.pth``
    hook is not run for a path added that way). A pure-Python wheel installs
    by unpacking it into site-packages, which is what pip does with it.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    paths = subprocess.run(
        [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    )
    target = Path(paths.stdout.strip())
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    (target / "zz_lent_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python whose ``zerg`` is the wheel built from this checkout."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    return install(build_wheel(tmp_path), tmp_path / "venv")


def run_env(database: Path) -> dict[str, str]:
    """The environment of a newcomer's shell: no Flask variables, no checkout on the path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "PYTHON")) and key not in ("DATABASE_URL", "API_TOKEN")
    }
    return {**env, "ENVIRONMENT": "development", "DATABASE_URL": f"sqlite:///{database}"}


def test_the_wheel_holds_every_module_and_page(installed: Path, tmp_path: Path) -> None:
    found = subprocess.run(
        [str(installed), "-c", "import zerg, zerg.realtime.events; print(zerg.__file__)"],
        cwd=tmp_path,
        env=run_env(tmp_path / "unused.sqlite"),
        check=True,
        capture_output=True,
        text=True,
    )
    assert str(installed.parents[1]) in found.stdout, "zerg came from outside the new venv"
    package = Path(found.stdout.strip()).parent
    shipped = {path.relative_to(package) for path in package.rglob("*") if path.is_file()}
    expected = {
        path.relative_to(ROOT / "zerg")
        for path in (ROOT / "zerg").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - shipped == set()


@pytest.fixture
def server(installed: Path, tmp_path: Path) -> Iterator[str]:
    """``flask --app zerg db upgrade``, then ``serve``, from a folder that is not the checkout."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = run_env(tmp_path / "zerg.sqlite")
    flask = [str(installed), "-m", "flask", "--app", "zerg"]
    upgrade = subprocess.run(
        [*flask, "db", "upgrade"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Created" in upgrade.stdout
    with local_server([*flask, "serve"], cwd=elsewhere, env=env) as url:
        yield url


def test_the_installed_server_migrates_and_serves_the_api_and_ui(server: str) -> None:
    assert requests.get(f"{server}/api/health", timeout=5).json()["database"] == "ok"
    assert requests.get(f"{server}/api/agents", timeout=5).json() == []
    page = requests.get(f"{server}/", timeout=5)
    assert page.status_code == 200 and 'src="/assets/js/' in page.text
    for asset in ("/assets/js/agents.js", "/assets/js/live.js", "/assets/style.css"):
        assert requests.get(f"{server}{asset}", timeout=5).status_code == 200, asset
    docs = requests.get(f"{server}/api/docs", timeout=5)
    assert docs.status_code == 200
    # The docs page's vendored Swagger UI and its start-up script ship too.
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', docs.text)
    assert any("swagger-ui-bundle.js" in asset for asset in assets), assets
    for asset in assets:
        assert requests.get(f"{server}{asset}", timeout=5).status_code == 200, asset
