"""The web UI's server side: pages and assets served from the package, open and self-contained.

What the pages do is tested in a real browser (tests/test_browser.py); these
tests need none and check what any HTTP client can see.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import AppFactory
from zerg import web

WEB = Path(web.__file__).parent
PAGES = ["/", "/runs", "/agents/1", "/threads/1", "/runs/1", "/mcp-servers"]


@pytest.mark.parametrize("path", PAGES)
def test_each_page_is_html_that_loads_only_its_own_assets(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    page = response.get_data(as_text=True)
    assert 'href="/api/docs"' in page
    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', page):
        with client.get(asset) as served:
            assert served.status_code == 200, asset


def test_scripts_are_served_as_javascript_modules(client: FlaskClient) -> None:
    with client.get("/assets/js/agents.js") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/javascript"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_stay_open_while_the_api_wants_the_token(make_app: AppFactory) -> None:
    client = make_app(API_TOKEN="secret").test_client()
    for path in [*PAGES, "/assets/style.css"]:
        with client.get(path) as response:
            assert response.status_code == 200, path
    assert client.get("/api/agents").status_code == 401


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_gets_an_html_404_page_with_a_way_back(client: FlaskClient) -> None:
    response = client.get("/no-such-page", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = response.get_data(as_text=True)
    assert "<h1>Not found</h1>" in page and "<code>/no-such-page</code>" in page
    assert '<a href="/">Back to the agents</a>' in page
    # Nothing on it to run: no script, no live status.
    assert "<script" not in page and "live-status" not in page
    for asset in re.findall(r'(?:src|href)="(/assets/[^"]+)"', page):
        with client.get(asset) as served:
            assert served.status_code == 200, asset


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/no-such-page", None),
        ("/no-such-page", "application/json"),
        ("/no-such-page", "*/*"),
        ("/api/no-such-thing", BROWSER_ACCEPT),
        ("/api", BROWSER_ACCEPT),
        ("/assets/no-such-file.js", "*/*"),
    ],
)
def test_other_clients_and_the_api_keep_the_problem_404(
    client: FlaskClient, path: str, accept: str | None
) -> None:
    response = client.get(path, headers={"Accept": accept} if accept else {})
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 404


def test_the_ui_fetches_nothing_from_elsewhere_and_never_parses_text_as_html() -> None:
    """No CDN or remote asset, and user text goes in through textContent only.

    Replies are the exception: markdown.js hands them over as a DOM fragment
    that DOMPurify has sanitised. The vendored libraries are checked below.
    """
    files = [
        p
        for p in WEB.rglob("*")
        if p.suffix in {".html", ".js", ".css"} and "vendor" not in p.relative_to(WEB).parts
    ]
    assert {p.name for p in files} >= {"base.html", "agents.js", "live.js", "style.css"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} names a remote URL"
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", text), (
            f"{path.name} builds HTML from strings"
        )


VENDOR = WEB / "static" / "vendor"


def test_the_vendored_libraries_are_the_pinned_releases_with_their_licences() -> None:
    """Each file is byte for byte the one its README row names, beside its licence, and used."""
    table = (VENDOR / "README.md").read_text()
    rows = re.findall(
        r"^\| `([\w.-]+)` \| `[^`]+` \| `([\w.-]+)` \|.*\| `([0-9a-f]{64})` \|",
        table,
        re.MULTILINE,
    )
    assert {folder for folder, _, _ in rows} == {p.name for p in VENDOR.iterdir() if p.is_dir()}
    users = {
        "marked": WEB / "static" / "js" / "markdown.js",
        "dompurify": WEB / "static" / "js" / "markdown.js",
        "swagger-ui-dist": WEB.parent / "api" / "openapi.py",
    }
    for folder, name, digest in rows:
        path = VENDOR / folder / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
        assert (VENDOR / folder / "LICENSE").is_file(), folder
        assert folder in users[folder.rpartition("-")[0]].read_text(), folder
    # Nothing else is shipped but the licence files.
    for folder in {folder for folder, _, _ in rows}:
        listed = {name for f, name, _ in rows if f == folder}
        for path in (VENDOR / folder).iterdir():
            assert path.name in listed or "LICENSE" in path.name or path.name == "NOTICE", path
