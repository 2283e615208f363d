"""Read py-spy's collapsed stacks of a zerg worker and say where a request's time goes.

Input: ``py-spy record --format raw`` output (one ``frame;frame;... count`` line
per distinct stack, root first), as written by ``bench/http_bench.py --profile``.
Output, for the samples of busy threads:

- **phases**: each sample goes to the deepest zerg/Flask step on its stack
  (gunicorn, Flask request set-up, before/after_request hooks, teardown and
  ``close_db``, ``get_db``, ORM load, commit, ``db.ping``, pydantic
  serialisation, ``parse_body``, ``events.publish``, logging, ...), so the
  shares add up to 100 %;
- **libraries**: the package of the innermost Python frame (sqlalchemy,
  pydantic, flask, werkzeug, gunicorn, zerg, the sqlite3 driver, stdlib);
- the functions with the most inclusive and self time.

Samples whose innermost frame is a thread waiting for work (the thread pool's
queue, a selector, a condition) are dropped and counted apart. Record with
``--gil`` (as ``http_bench.py --profile`` does) to see only the thread holding
the GIL, i.e. where the one core goes; the sqlite3 C calls release the GIL and
so are under-counted there (the raw sqlite3 baseline measures them directly).

Given the measured requests/s of the case (one saturated core), a share is also
a time per request: ``share x 1e6 / rps`` microseconds.

    .venv/bin/python bench/profile_summary.py /tmp/prof/agent.txt [--rps 1200] [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

# (step, frame pattern): zerg/Flask-level steps. A sample goes to the deepest match.
STEPS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("gunicorn (accept, parse, write, keep-alive)", r"gunicorn/"),
        ("flask: request context, wsgi, response", r"\bwsgi_app \(.*flask/app\.py"),
        ("flask: dispatch (routing, hooks glue)", r"\bfull_dispatch_request \(.*flask/app\.py"),
        ("before_request hooks", r"\bpreprocess_request \(.*flask/app\.py"),
        ("after_request hooks", r"\bprocess_response \(.*flask/app\.py"),
        ("teardown (app/request context)", r"\bdo_teardown_(request|appcontext) \("),
        ("teardown: close_db (rollback, close)", r"^close_db \(.*zerg/db\.py"),
        ("view body", r"\.dispatch_request \(.*flask/app\.py"),
        ("get_db: session creation", r"^get_db \(.*zerg/db\.py"),
        ("ORM: load rows (get/scalars)", r"^load_row \(|Session\.scalars \("),
        ("Core rows through the session", r"^fetch_rows? \(.*zerg/db\.py"),
        ("ORM: commit (flush, COMMIT)", r"Session\.commit \(.*sqlalchemy/orm/session"),
        ("db.ping (health query)", r"^ping \(.*zerg/db\.py"),
        ("get_runner / providers", r"^(get_runner|get_providers) \("),
        ("parse_body (pydantic validation)", r"^parse_body \(.*zerg/api/io\.py"),
        ("parse_query (pydantic)", r"^parse_query \(.*zerg/api/io\.py"),
        (
            "response: respond*/serialize (pydantic, json, Response)",
            r"^(respond\w*|serialize|dump_row) \(.*zerg/(api/io|schemas)\.py",
        ),
        ("events.publish (bus, hub)", r"^publish \(.*zerg/realtime/events\.py"),
        ("logging", r"logging/__init__\.py"),
    ]
]

# (mechanism, frame pattern): what the time is spent on, whichever step asked for it.
MECHANISMS: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern))
    for name, pattern in [
        ("gunicorn: other", r"gunicorn/"),
        ("gunicorn: HTTP parsing", r"gunicorn/http/(parser|message|unreader|body)\.py"),
        ("gunicorn: response write, socket", r"gunicorn/(http/wsgi|util)\.py"),
        ("flask/werkzeug: other", r"(flask|werkzeug)/"),
        ("flask: app/request context push/pop", r"(AppContext|RequestContext)\.(push|pop) \("),
        (
            "werkzeug: Request/environ, headers",
            r"werkzeug/(sansio/request|wrappers/request|datastructures)",
        ),
        ("werkzeug: routing (url match)", r"werkzeug/routing/"),
        ("werkzeug: Response build, headers", r"werkzeug/(sansio|wrappers)/response"),
        ("sqlalchemy: other", r"sqlalchemy/"),
        ("sqlalchemy: pool checkout/checkin/reset", r"sqlalchemy/pool/"),
        ("sqlalchemy: events (BEGIN hook)", r"sqlalchemy/event/|^_on_begin \("),
        (
            "sqlalchemy: SQL compile, cache key",
            r"sqlalchemy/sql/(compiler|cache_key|traversals)\.py",
        ),
        (
            "sqlalchemy: ORM session/transaction state",
            r"sqlalchemy/orm/(session|state_changes)\.py",
        ),
        (
            "sqlalchemy: ORM row loading, identity map",
            r"sqlalchemy/orm/(loading|identity|state|instrumentation|attributes)\.py",
        ),
        ("sqlalchemy: ORM flush (unit of work)", r"sqlalchemy/orm/(unitofwork|persistence)\.py"),
        (
            "sqlalchemy: result rows, type processing",
            r"sqlalchemy/engine/(result|cursor|row)\.py|process_result_value|process_bind_param",
        ),
        (
            "sqlite3 C call (execute, fetch, BEGIN, COMMIT)",
            r"\.do_(execute|execute_no_params|commit|rollback) \(",
        ),
        ("pydantic (validate, dump)", r"pydantic"),
        ("json (dumps, loads)", r"json/"),
        ("zerg events/hub", r"zerg/realtime/(events|hub)\.py"),
        ("logging", r"logging/"),
        ("threading, queues, selectors", r"(threading|selectors|queue|socket)\.py"),
    ]
]

LIBRARIES: list[tuple[str, str]] = [
    (
        "sqlite3 driver (C: execute, fetch, commit)",
        r"\.do_(execute|commit|rollback)\b|\.fetch|sqlite",
    ),
    ("sqlalchemy", r"sqlalchemy/"),
    ("pydantic", r"pydantic"),
    ("flask", r"flask/"),
    ("werkzeug", r"werkzeug/"),
    ("gunicorn", r"gunicorn/"),
    ("zerg", r"zerg/"),
    ("stdlib json", r"json/"),
    ("stdlib logging", r"logging/"),
    ("stdlib threading/selectors/socket/queue", r"(threading|selectors|socket|queue)\.py"),
]


# Leaves of threads that wait rather than work (py-spy's idle detection misses some).
IDLE = re.compile(
    r"^_worker \(.*concurrent/futures/thread\.py|Selector\.select \(|\.wait \(.*threading\.py"
)


def parse(text: str) -> Counter[tuple[str, ...]]:
    """Collapsed stacks: ``a;b;c 12`` lines -> {(a, b, c): 12}."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(frame.strip() for frame in stack.split(";"))] += int(count)
    return stacks


def deepest(stack: tuple[str, ...], rules: list[tuple[str, re.Pattern[str]]]) -> str:
    """The rule matching the innermost frame (later rules win on the same frame)."""
    for frame in reversed(stack):
        for name, pattern in reversed(rules):
            if pattern.search(frame):
                return name
    return "other (stack torn by non-blocking sampling, or no known frame)"


def library_of(stack: tuple[str, ...]) -> str:
    leaf = stack[-1] if stack else ""
    for name, pattern in LIBRARIES:
        if re.search(pattern, leaf):
            return name
    return "other stdlib / interpreter"


def short(frame: str) -> str:
    """``name (…/site-packages/pkg/mod.py:12)`` -> ``name (pkg/mod.py:12)``."""
    return re.sub(r"\(.*?(site-packages/|lib/python3\.\d+/|/work/main/)", "(", frame)


def without_line(frame: str) -> str:
    """``name (pkg/mod.py:12)`` -> ``name (pkg/mod.py)``."""
    return re.sub(r":\d+\)$", ")", frame)


def summarize(text: str, rps: float | None = None, top: int = 15) -> dict[str, Any]:
    stacks = parse(text)
    idle = sum(count for stack, count in stacks.items() if stack and IDLE.search(stack[-1]))
    stacks = Counter({s: n for s, n in stacks.items() if not (s and IDLE.search(s[-1]))})
    total = sum(stacks.values()) or 1
    steps: Counter[str] = Counter()
    mechanisms: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for stack, count in stacks.items():
        steps[deepest(stack, STEPS)] += count
        mechanisms[deepest(stack, MECHANISMS)] += count
        libraries[library_of(stack)] += count
        for function in {without_line(short(frame)) for frame in stack}:
            inclusive[function] += count
        if stack:
            own[short(stack[-1])] += count
    us_per_request = 1e6 / rps if rps else None

    def table(counter: Counter[str], limit: int | None = None) -> list[dict[str, Any]]:
        rows = []
        for name, count in counter.most_common(limit):
            share = count / total
            row: dict[str, Any] = {"name": name, "samples": count, "share": share}
            if us_per_request:
                row["us_per_request"] = share * us_per_request
            rows.append(row)
        return rows

    return {
        "samples": total,
        "idle_samples_dropped": idle,
        "rps": rps,
        "us_per_request": us_per_request,
        "steps": table(steps),
        "mechanisms": table(mechanisms),
        "libraries": table(libraries),
        "inclusive": table(inclusive, top),
        "self": table(own, top),
    }


def render(summary: dict[str, Any], title: str = "") -> str:
    lines = [
        f"{title} ({summary['samples']} samples, {summary['idle_samples_dropped']} idle dropped)"
    ]
    if summary["us_per_request"]:
        lines[0] += f", {summary['rps']:.0f} req/s = {summary['us_per_request']:.0f} us/request"
    for section in ("steps", "mechanisms", "libraries", "inclusive", "self"):
        lines.append(f"  {section}:")
        for row in summary[section]:
            us = f"{row['us_per_request']:7.0f} us" if "us_per_request" in row else ""
            lines.append(f"    {100 * row['share']:5.1f}% {us}  {row['name']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stacks", type=Path, nargs="+", help="py-spy --format raw output")
    parser.add_argument("--rps", type=float, help="the case's requests/s, for us/request")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    for path in args.stacks:
        print(render(summarize(path.read_text(), args.rps, args.top), path.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
