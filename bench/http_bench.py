"""HTTP throughput and latency of zerg's hot routes, against a reference app, a bare WSGI app
and raw sqlite3.

What it measures: requests per second and p50/p99 latency of

    GET  /api/health                     (no target: a probe's cost, for the record)
    GET  /api/agents/{id}
    GET  /api/agents?limit=100            (120 agents seeded)
    GET  /api/threads/{id}/messages?limit=50   (60 messages seeded)
    POST /api/threads/{id}/messages       (a thread of its own, so the GETs stay unchanged)

served by gunicorn with the project's ``gunicorn.conf.py`` and ONE worker
(``WEB_CONCURRENCY=1``) pinned to core 0 (``taskset -c 0``), on a fresh SQLite
file (``ENVIRONMENT=testing``, ``SCHEDULER_ENABLED=false``, ``EVENT_BACKEND=memory``,
``AUTO_CREATE_TABLES=true``). Every request goes through Flask. The load
generator is ``wrk -t1 -c<N> --latency`` pinned to core 1 (a Lua script makes
the POST); without wrk, an asyncio keep-alive client in a subprocess pinned the
same way (lower ceiling: say so when comparing with wrk figures).

Three baselines, measured in the same invocation:

1. ``bench/reference_app.py``: a minimal Flask app running the same SQLAlchemy
   statements through a session and serialising with the same pydantic
   adapters, served by the same gunicorn settings (``bench/gunicorn_reference.conf.py``)
   on the same database file: the honest ceiling of this stack. Target: each
   measured route >= 0.80 x the reference (``x ref``).
2. ``bench/bare_app.py``: a plain WSGI function returning fixed JSON, same
   gunicorn settings (``bench/gunicorn_bare.conf.py``). Targets (``x bare``):
   agent >= 0.31, 100 agents >= 0.18, 50 messages >= 0.25, POST >= 0.20.
3. raw ``sqlite3`` in this process (pinned to core 0 once the servers are
   stopped), issuing exactly the statements each view issues, in the same
   transaction shape (BEGIN ... ROLLBACK around reads, as a read session's
   close does; BEGIN IMMEDIATE ... COMMIT around the POST's lock, stamp and
   insert), on the same database file: queries per second (``x sqlite``).

The servers run side by side on core 0 and the cases are interleaved: one
warm-up round of every case, then ``--runs`` (5) rounds, each running every
case once, so the baselines and zerg see the same machine conditions. The
figures are medians over the rounds. CPU use of the server worker, the load
generator and everything else on the machine (other people's test suites) is
recorded per run, with the load average: read the noise column before the ratios.

Run it from the repository root:

    .venv/bin/python bench/http_bench.py
    .venv/bin/python bench/http_bench.py --duration 5 --connections 16 --json out.json
    .venv/bin/python bench/http_bench.py --profile /tmp/prof   # + a py-spy profile per zerg case

``--profile DIR`` runs one more (unmeasured) wrk run per zerg case while
``py-spy record`` samples the worker (``pip install py-spy`` into the venv), and
writes collapsed stacks plus a per-request breakdown (``bench/profile_summary.py``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from common import HOST
from common import child_pids
from common import free_port
from common import wait_healthy
from http_loadgen import LoadGenerator
from http_loadgen import RunFigures
from http_loadgen import choose_loadgen
from http_loadgen import pinned
from http_loadgen import pinning_available
from http_sqlite import sqlite_baseline

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SERVER_CORE = 0
LOAD_CORE = 1
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
PROFILE_RATE = 200  # py-spy samples per second
SEED_AGENTS = 120
SEED_MESSAGES = 60
POST_BODY = '{"content": "benchmark message: the quick brown fox jumps over the lazy dog"}'
# The targets: zerg req/s as a fraction of the bare WSGI app's, and of the
# reference app's on the same route, in the same run.
TARGETS_VS_BARE = {"agent": 0.31, "agents": 0.18, "messages": 0.25, "post_message": 0.20}
TARGET_VS_REFERENCE = 0.80
# With --worker-class other than gthread: each route keeps this much of gthread's req/s.
TARGET_VS_GTHREAD = 0.90


# --- cases -------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    server: str  # "bare", "reference" or "zerg"
    method: str
    path: str
    body: str | None = None
    sqlite: str | None = None  # key of the raw sqlite3 baseline doing the same statements
    reference: str | None = None  # key of the reference app's case for the same route
    gthread: str | None = None  # key of the same route on a gthread worker (--worker-class)

    @property
    def target(self) -> float | None:
        return TARGETS_VS_BARE.get(self.key) if self.server == "zerg" else None


@dataclass(frozen=True)
class Seeded:
    agent_id: int
    read_thread_id: int
    write_thread_id: int
    agents: int
    messages: int


def build_cases(seeded: Seeded, beside_gthread: bool = False) -> list[Case]:
    """Every case; ``beside_gthread`` adds each zerg route on a gthread worker, as a baseline."""
    routes = [
        ("agent", "GET /api/agents/{id}", "GET", f"/api/agents/{seeded.agent_id}", None),
        ("agents", "GET /api/agents?limit=100", "GET", "/api/agents?limit=100", None),
        (
            "messages",
            "GET /api/threads/{id}/messages?limit=50",
            "GET",
            f"/api/threads/{seeded.read_thread_id}/messages?limit=50",
            None,
        ),
        (
            "post_message",
            "POST /api/threads/{id}/messages",
            "POST",
            f"/api/threads/{seeded.write_thread_id}/messages",
            POST_BODY,
        ),
    ]
    cases = [Case("bare", "bare WSGI (baseline)", "bare", "GET", "/api/health")]
    health = ("health", "GET /api/health", "GET", "/api/health", None)
    for key, label, method, path, body in [health, *routes]:
        gthread = f"gthread_{key}" if beside_gthread else None
        if gthread:
            cases.append(Case(gthread, f"gthread: {label}", "gthread", method, path, body))
        if key == "health":
            cases.append(Case(key, label, "zerg", method, path, sqlite=key, gthread=gthread))
            continue
        cases.append(Case(f"ref_{key}", f"reference: {label}", "reference", method, path, body))
        cases.append(
            Case(key, label, "zerg", method, path, body, key, f"ref_{key}", gthread=gthread)
        )
    return cases


# --- machine load ---------------------------------------------------------------


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


# --- servers -------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    core: int | None
    worker_pid: int = 0

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def server_env(database: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BIND=f"{HOST}:{port}",
        WEB_CONCURRENCY="1",
        ENVIRONMENT="testing",
        DATABASE_URL=f"sqlite:///{database}",
        SCHEDULER_ENABLED="false",
        EVENT_BACKEND="memory",
        AUTO_CREATE_TABLES="true",
        API_TOKEN="",  # empty: no token, so no auth hook (as in testing)
        CORS_ORIGINS="",
        ACCESS_LOG="",  # gunicorn.conf.py: no access log unless asked for
        PYTHON_DOTENV_DISABLED="1",  # a developer's .env must not change the measurement
        PYTHONUNBUFFERED="1",
    )
    return env


def stop(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL to the process group this script started, if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own session: start_new_session=True
    except OSError:
        process.kill()
    process.wait(timeout=STOP_TIMEOUT)


@contextmanager
def running_gunicorn(
    name: str, config: Path, workdir: Path, core: int | None, extra: tuple[str, ...] = ()
) -> Iterator[Server]:
    """Start gunicorn with ``config`` (and ``extra`` arguments) and one worker; always stop it."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", str(config), *extra]
    command, preexec = pinned(command, core)
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env(workdir / "bench.sqlite", port),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec,
            start_new_session=True,
        )
    server = Server(name, process, f"http://{HOST}:{port}", log_path, core)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(process)


def wait_ready(server: Server) -> None:
    """Wait for a 200 from health, then for gunicorn's one worker, whose pid profiling needs."""
    wait_healthy(server.url, server.process, START_TIMEOUT, server.log_tail)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        workers = child_pids(server.process.pid)
        if len(workers) == 1:
            server.worker_pid = workers[0]
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} server has no single worker:\n{server.log_tail()}")


# --- seeding -------------------------------------------------------------------


def post(http: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(url, json=body, timeout=30)
    if response.status_code != 201:
        raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:300]}")
    result: dict[str, Any] = response.json()
    return result


def seed(base: str, agents: int, messages: int) -> Seeded:
    """Create the data the cases read, over HTTP like any client."""
    with requests.Session() as http:
        ids = [
            post(
                http,
                f"{base}/api/agents",
                {
                    "name": f"bench agent {n}",
                    "system_instructions": "You are a benchmark agent. Be brief.",
                    "task_instructions": "Summarise the day.",
                    "config": {"temperature": 0.2, "tags": ["bench"]},
                },
            )["id"]
            for n in range(agents)
        ]
        read_thread = post(http, f"{base}/api/threads", {"agent_id": ids[0], "title": "read"})
        write_thread = post(http, f"{base}/api/threads", {"agent_id": ids[0], "title": "write"})
        for n in range(messages):
            post(
                http,
                f"{base}/api/threads/{read_thread['id']}/messages",
                {"content": f"seeded message {n}: " + "lorem ipsum dolor sit amet " * 4},
            )
    return Seeded(ids[0], read_thread["id"], write_thread["id"], agents, messages)


# --- the rounds ---------------------------------------------------------------------


@dataclass
class CaseResult:
    case: Case
    warmup: RunFigures | None = None
    runs: list[RunFigures] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)


def run_rounds(
    cases: list[Case],
    servers: dict[str, Server],
    loadgen: LoadGenerator,
    args: argparse.Namespace,
) -> dict[str, CaseResult]:
    results = {case.key: CaseResult(case) for case in cases}
    for round_number in range(args.runs + 1):
        warm = round_number == 0
        duration = args.warmup if warm else args.duration
        label = "warm-up" if warm else f"run {round_number}/{args.runs}"
        print(f"  {label} ({duration:g} s per case), load average {load_average()}", flush=True)
        for case in cases:
            server = servers[case.server]
            figures = loadgen.run(case, server.url, duration, server)
            if warm:
                results[case.key].warmup = figures
            else:
                results[case.key].runs.append(figures)
            print(
                f"    {case.label:<42} {figures.rps:>9.0f} req/s  p50 {figures.p50_ms:6.2f} ms"
                f"  p99 {figures.p99_ms:7.2f} ms  srv {figures.server_cpu_pct:3.0f}%"
                f"  others {figures.other_cpu_pct:3.0f}%"
                f" (on server core {figures.other_on_server_core_pct:3.0f}%){error_note(figures)}",
                flush=True,
            )
    return results


def error_note(figures: RunFigures) -> str:
    if not (figures.errors or figures.non_2xx):
        return ""
    return f"  ERRORS: {figures.errors} socket, {figures.non_2xx} non-2xx"


# --- profiling (optional) ---------------------------------------------------------------


def profile_cases(
    cases: list[Case],
    servers: dict[str, Server],
    loadgen: LoadGenerator,
    args: argparse.Namespace,
    rates: dict[str, float],
) -> dict[str, Any]:
    """One more run per zerg case while py-spy samples the worker; collapsed stacks to disk."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: `.venv/bin/pip install py-spy` to profile", file=sys.stderr)
        return {}
    from profile_summary import render  # bench/ is on sys.path when run as a script
    from profile_summary import summarize

    out: Path = args.profile
    out.mkdir(parents=True, exist_ok=True)
    summaries: dict[str, Any] = {}
    for case in cases:
        if case.server != "zerg" or (args.profile_cases and case.key not in args.profile_cases):
            continue
        server = servers[case.server]
        stacks = out / f"{case.key}.txt"
        command, preexec = pinned(
            [
                spy,
                "record",
                "--pid",
                str(server.worker_pid),
                "--rate",
                str(PROFILE_RATE),
                "--gil",  # only the thread holding the GIL: where the one core goes
                "--nonblocking",  # do not pause the worker per sample (128 threads)
                "--format",
                "raw",
                "--duration",
                str(max(1, round(args.profile_seconds))),
                "--output",
                str(stacks),
            ],
            loadgen.core,
        )
        spying = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec
        )
        try:
            time.sleep(0.5)  # let py-spy attach before the load starts
            figures = loadgen.run(case, server.url, args.profile_seconds, server)
            _, err = spying.communicate(timeout=args.profile_seconds + 30)
        finally:
            stop(spying)
        if not stacks.exists():
            print(f"py-spy wrote nothing for {case.key}: {err.decode()[-500:]}", file=sys.stderr)
            continue
        summary = summarize(stacks.read_text(), rates.get(case.key))
        summary["profiled_rps"] = figures.rps
        (out / f"{case.key}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        text = render(
            summary,
            f"{case.label}: profiled at {figures.rps:.0f} req/s under py-spy",
        )
        (out / f"{case.key}.summary.txt").write_text(text + "\n")
        summaries[case.key] = summary
        print(text, flush=True)
    return summaries


# --- report ---------------------------------------------------------------------------------


def ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("inf")


def report(
    results: dict[str, CaseResult], sqlite: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    bare = results["bare"]
    bare_rps = bare.median("rps")
    rows: list[dict[str, Any]] = []
    for key, result in results.items():
        case = result.case
        rps = result.median("rps")
        paired = [
            ratio(run.rps, base.rps) for run, base in zip(result.runs, bare.runs, strict=True)
        ]
        sqlite_qps = sqlite.get(case.sqlite or "", {}).get("qps")
        errors = sum(run.errors + run.non_2xx for run in result.runs)
        reference = results[case.reference] if case.reference else None
        gthread = results[case.gthread] if case.gthread else None
        row: dict[str, Any] = {
            "key": key,
            "label": case.label,
            "server": case.server,
            "path": case.path,
            "method": case.method,
            "rps": rps,
            "p50_ms": result.median("p50_ms"),
            "p99_ms": result.median("p99_ms"),
            "ratio_vs_bare": ratio(rps, bare_rps),
            "paired_ratio_vs_bare": statistics.median(paired),
            "ratio_vs_reference": ratio(rps, reference.median("rps")) if reference else None,
            "ratio_vs_gthread": ratio(rps, gthread.median("rps")) if gthread else None,
            "sqlite_qps": sqlite_qps,
            "ratio_vs_sqlite": ratio(rps, sqlite_qps) if sqlite_qps else None,
            "server_cpu_pct": result.median("server_cpu_pct"),
            "other_cpu_pct": result.median("other_cpu_pct"),
            "other_on_server_core_pct": result.median("other_on_server_core_pct"),
            "errors": errors,
            "target": case.target,
            "target_vs_reference": TARGET_VS_REFERENCE if reference else None,
            "target_vs_gthread": TARGET_VS_GTHREAD if gthread else None,
            "verdict": None,
            "runs": [asdict(run) for run in result.runs],
            "warmup": asdict(result.warmup) if result.warmup else None,
        }
        if case.target is not None or gthread is not None:
            met = case.target is None or row["ratio_vs_bare"] >= case.target
            if reference is not None:
                met = met and row["ratio_vs_reference"] >= TARGET_VS_REFERENCE
            if gthread is not None:
                met = met and row["ratio_vs_gthread"] >= TARGET_VS_GTHREAD
            row["verdict"] = "PASS" if met and not errors else "MISS"
        rows.append(row)

    headers = [
        "case",
        "req/s",
        "p50 ms",
        "p99 ms",
        "x bare",
        "x ref",
        "x gthread",
        "sqlite q/s",
        "x sqlite",
        "srv cpu%",
        "others%",
        "on srv core%",
        "targets",
        "",
    ]
    table = [headers]
    for row in rows:
        targets = []
        if row["target"] is not None:
            targets.append(f"bare >= {row['target']:.2f}, ref >= {row['target_vs_reference']:.2f}")
        if row["target_vs_gthread"] is not None:
            targets.append(f"gthread >= {row['target_vs_gthread']:.2f}")
        table.append(
            [
                row["label"],
                f"{row['rps']:.0f}",
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                f"{row['ratio_vs_bare']:.2f}",
                f"{row['ratio_vs_reference']:.2f}" if row["ratio_vs_reference"] else "-",
                f"{row['ratio_vs_gthread']:.2f}" if row["ratio_vs_gthread"] else "-",
                f"{row['sqlite_qps']:.0f}" if row["sqlite_qps"] else "-",
                f"{row['ratio_vs_sqlite']:.3f}" if row["ratio_vs_sqlite"] else "-",
                f"{row['server_cpu_pct']:.0f}",
                f"{row['other_cpu_pct']:.0f}",
                f"{row['other_on_server_core_pct']:.0f}",
                ", ".join(targets),
                (row["verdict"] or "") + (f" ({row['errors']} errors)" if row["errors"] else ""),
            ]
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    lines = []
    for number, line in enumerate(table):
        cells = [line[0].ljust(widths[0])]
        cells += [text.rjust(width) for text, width in zip(line[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("-" * len(lines[0]))
    return rows, lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of the warm-up run")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per case (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument("--sqlite-seconds", type=float, default=1.0, help="per sqlite3 run")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy each zerg case")
    parser.add_argument("--profile-cases", nargs="+", metavar="KEY", help="only these cases")
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="per profiled case")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save results here")
    parser.add_argument(
        "--worker-class",
        choices=("gthread", "gevent"),
        help="zerg's worker (gunicorn -k; default: gunicorn.conf.py's); other than gthread, "
        f"a gthread worker serves each route beside it, and it must keep >= {TARGET_VS_GTHREAD}"
        " x gthread's req/s",
    )
    args = parser.parse_args(argv)
    if not (0 < args.duration <= 120 and 0 < args.warmup <= 120 and 1 <= args.runs <= 20):
        parser.error("keep it bounded: 0 < duration, warmup <= 120 s; 1 <= runs <= 20")
    if not 1 <= args.profile_seconds <= 120:
        parser.error("--profile-seconds must be between 1 and 120")
    if not 1 <= args.connections <= 1000:
        parser.error("--connections must be between 1 and 1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("gunicorn") is None:
        raise SystemExit("gunicorn is not installed: `.venv/bin/pip install -e '.[test]'`")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    pin = pinning_available() and not args.no_pin
    server_core, load_core = (SERVER_CORE, LOAD_CORE) if pin else (None, None)
    if not pin and not args.no_pin:
        print(
            "fewer than 2 usable cores: server and load generator are NOT pinned", file=sys.stderr
        )
    started = time.time()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="zerg-http-bench-") as tmp:
        workdir = Path(tmp)
        loadgen = choose_loadgen(args.loadgen, args.connections, workdir, load_core)
        estimate = (
            10 * (args.warmup + args.runs * args.duration)
            + 5 * (args.runs + 1) * args.sqlite_seconds
        )
        print(
            f"http bench: {loadgen.kind} ({loadgen.version}), -c{args.connections}, "
            f"1 warm-up of {args.warmup:g} s + {args.runs} x {args.duration:g} s per case, "
            f"server on core {server_core}, load on core {load_core}; ~{estimate / 60:.1f} min; "
            f"load average {load_before}",
            flush=True,
        )
        with ExitStack() as stack:
            bare = stack.enter_context(
                running_gunicorn("bare", BENCH / "gunicorn_bare.conf.py", workdir, server_core)
            )
            zerg_args = ("-k", args.worker_class) if args.worker_class else ()
            zerg = stack.enter_context(
                running_gunicorn("zerg", ROOT / "gunicorn.conf.py", workdir, server_core, zerg_args)
            )
            seeded = seed(zerg.url, SEED_AGENTS, SEED_MESSAGES)
            # Started once zerg has made the tables and the rows it is to read.
            reference = stack.enter_context(
                running_gunicorn(
                    "reference", BENCH / "gunicorn_reference.conf.py", workdir, server_core
                )
            )
            servers = {"bare": bare, "reference": reference, "zerg": zerg}
            beside_gthread = args.worker_class not in (None, "gthread")
            if beside_gthread:
                servers["gthread"] = stack.enter_context(
                    running_gunicorn(
                        "gthread",
                        ROOT / "gunicorn.conf.py",
                        workdir,
                        server_core,
                        ("-k", "gthread"),
                    )
                )
            affinity = {
                name: sorted(os.sched_getaffinity(server.worker_pid))
                for name, server in servers.items()
            }
            cases = build_cases(seeded, beside_gthread)
            results = run_rounds(cases, servers, loadgen, args)
            profiles: dict[str, Any] = {}
            if args.profile:
                rates = {key: result.median("rps") for key, result in results.items()}
                profiles = profile_cases(cases, servers, loadgen, args, rates)
        print(f"  raw sqlite3 baseline ({args.runs} x {args.sqlite_seconds:g} s per query)")
        sqlite = sqlite_baseline(
            workdir / "bench.sqlite",
            seeded,
            json.loads(POST_BODY)["content"],
            args.runs,
            args.sqlite_seconds,
            server_core,
        )
    rows, lines = report(results, sqlite)
    load_after = load_average()
    print()
    print(
        f"HTTP, one gunicorn {args.worker_class or 'gunicorn.conf.py'} worker on core "
        f"{server_core}, {loadgen.kind} -c"
        f"{args.connections} on core {load_core}; median of {args.runs} x {args.duration:g} s"
    )
    print("\n".join(lines))
    print(
        "x bare = req/s / bare WSGI req/s (same gunicorn settings, same run); x ref = req/s / "
        "the reference app's req/s on the same route; x gthread = req/s / a gthread worker's "
        "on the same route (--worker-class); x sqlite = req/s / "
        "raw sqlite3 q/s of the same statements in-process on the server's core; "
        "cpu% = % of one core (others = rest of the machine, e.g. concurrent test suites; "
        "on srv core = what else ran on the server's core: it takes from the server)"
    )
    print(f"load average: before {load_before}, after {load_after}")
    verdicts = []
    for row in rows:
        if row["verdict"]:
            parts = []
            if row["target"] is not None:
                parts.append(
                    f"{row['ratio_vs_bare']:.2f} x bare (target >= {row['target']:.2f}; "
                    f"paired-run median {row['paired_ratio_vs_bare']:.2f}), "
                    f"{row['ratio_vs_reference']:.2f} x reference "
                    f"(target >= {row['target_vs_reference']:.2f})"
                )
            if row["target_vs_gthread"] is not None:
                parts.append(
                    f"{row['ratio_vs_gthread']:.2f} x gthread "
                    f"(target >= {row['target_vs_gthread']:.2f})"
                )
            verdict = f"{row['verdict']}: {row['label']} " + ", ".join(parts)
            verdicts.append(verdict)
            print(verdict)
    if args.json:
        document = {
            "benchmark": "http",
            "started": datetime.fromtimestamp(started, UTC).isoformat(),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_average_before": load_before,
                "load_average_after": load_after,
            },
            "loadgen": {"kind": loadgen.kind, "version": loadgen.version},
            "pinning": {"server_core": server_core, "load_core": load_core, "worker": affinity},
            "seeded": asdict(seeded),
            "cases": rows,
            "sqlite": sqlite,
            "verdicts": verdicts,
            "profiles": profiles,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
