"""Run every benchmark in sequence and save one combined JSON: the "one command".

In order, each in its own process with a time limit, its output shown as it runs:

1. ``http_bench.py``: HTTP req/s and p50/p99 of the hot routes under wrk, one
   pinned gunicorn worker, against a reference Flask app, a bare WSGI app and raw sqlite3
   (targets: PASS/MISS);
2. ``run_latency.py``: a run's POST -> first chunk / stream_end on the offline model,
   against the offline provider streaming in-process, and how soon a run that
   takes a busy thread's place (interrupt, rollback) streams, against an idle
   thread's run;
3. ``ws_fanout.py``: websocket fan-out to 1 (baseline), 50 and 200 clients at 10 events/s;
4. ``load.py``: a mixed load with 50 websocket watchers, then checks for errors,
   lost messages and leaks (p50/p99 per operation).

Each writes its JSON to a temporary file; this script gathers them, with the
machine's load average before and after each, into
``bench/results/<UTC time>.json`` (and ``bench/results/latest.json``; the folder
is git-ignored), then prints a short summary. The whole run takes about 8 minutes
with the defaults.

    .venv/bin/python bench/run_all.py
    .venv/bin/python bench/run_all.py --only http --profile /tmp/prof
    .venv/bin/python bench/run_all.py --quick      # shorter runs, to check that it all works
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Benchmark:
    key: str
    script: str
    timeout: float  # seconds, then it is stopped

    def command(self, output: Path, args: argparse.Namespace) -> list[str]:
        command = [sys.executable, str(BENCH / self.script), "--json", str(output)]
        if self.key == "http":
            command += ["--duration", str(args.duration), "--runs", str(args.runs)]
            if args.profile:
                command += ["--profile", str(args.profile)]
        if args.quick:
            command += QUICK[self.key]
        return command


BENCHMARKS = [
    Benchmark("http", "http_bench.py", 15 * 60),
    Benchmark("run_latency", "run_latency.py", 5 * 60),
    Benchmark("ws_fanout", "ws_fanout.py", 10 * 60),
    Benchmark("load", "load.py", 5 * 60),
]
QUICK = {
    "http": ["--warmup", "1", "--duration", "1", "--runs", "2", "--sqlite-seconds", "0.2"],
    "run_latency": ["--runs", "5"],
    "ws_fanout": ["--clients", "20", "--duration", "3", "--drain", "1"],
    "load": ["--duration", "5"],
}


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def run(benchmark: Benchmark, output: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one benchmark to completion or its time limit; return what it reported."""
    command = benchmark.command(output, args)
    print(f"\n=== {benchmark.key}: {' '.join(command[1:])}", flush=True)
    load_before = load_average()
    started = time.monotonic()
    # Its own session, so that a stop reaches it (and what it started) and nothing else.
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    status: str
    try:
        code = process.wait(timeout=benchmark.timeout)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        status = f"stopped after its {benchmark.timeout:.0f} s limit"
        terminate(process)
    except BaseException:
        terminate(process)
        raise
    result: dict[str, Any] = {
        "status": status,
        "command": command[1:],
        "seconds": round(time.monotonic() - started, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "results": None,
    }
    if output.exists():
        result["results"] = json.loads(output.read_text())
    print(f"=== {benchmark.key}: {status} in {result['seconds']:.0f} s", flush=True)
    return result


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets the benchmark stop its servers; SIGKILL its group if it does not."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def summary(combined: dict[str, Any]) -> list[str]:
    lines = ["", "=== summary"]
    runs = combined["benchmarks"]
    http = (runs.get("http") or {}).get("results")
    if http:
        for row in http["cases"]:
            if row["server"] == "zerg":
                verdict = f"  {row['verdict']}" if row["verdict"] else ""
                reference = row.get("ratio_vs_reference")
                versus = f"  {reference:.2f} x ref" if reference else ""
                lines.append(
                    f"http  {row['label']:<42} {row['rps']:8.0f} req/s  {row['ratio_vs_bare']:.2f}"
                    f" x bare{versus}{verdict}"
                )
    latency = (runs.get("run_latency") or {}).get("results")
    if latency:
        end = latency["server"]["stream_end_ms"]["median"]
        lines.append(
            f"run   POST -> stream_end median {end:.1f} ms,"
            f" overhead {latency['overhead_ms']['stream_end']:.1f} ms"
            f" ({latency['ratio_stream_end_vs_direct']:.2f} x direct)"
        )
        for strategy, figures in latency.get("takeover", {}).items():
            lines.append(
                f"run   {strategy}: new run's first chunk"
                f" {figures['new_first_chunk_ms']['median']:.1f} ms"
                f" ({figures['ratio_new_first_chunk_vs_idle']:.2f} x an idle thread's)"
            )
    fanout = (runs.get("ws_fanout") or {}).get("results")
    if fanout:
        for row in fanout["results"]:
            lines.append(
                f"ws    {row['clients']:4d} clients: p99 {row['p99_ms']:.1f} ms, lost {row['lost']}"
            )
        lines.append(f"ws    {fanout['target']}")
    load = (runs.get("load") or {}).get("results")
    if load:
        failed = [name for name, problems in load["checks"].items() if problems]
        verdict = f"FAIL: {', '.join(failed)}" if failed else "all checks PASS"
        lines.append(f"load  {load['seconds']:.0f} s, {load['frames']} ws frames: {verdict}")
    for key, run_result in runs.items():
        if run_result["status"] != "ok":
            lines.append(f"{key}: {run_result['status']}")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    keys = [benchmark.key for benchmark in BENCHMARKS]
    parser.add_argument("--only", nargs="+", choices=keys, help="run only these")
    parser.add_argument("--duration", type=float, default=5.0, help="http: seconds per run")
    parser.add_argument("--runs", type=int, default=5, help="http: measured runs per case")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="http: py-spy each case")
    parser.add_argument("--quick", action="store_true", help="short runs, to check the setup")
    parser.add_argument("--output", type=Path, help="combined JSON (default: bench/results/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    started = datetime.now(UTC)
    combined: dict[str, Any] = {
        "started": started.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": load_average(),
        },
        "quick": args.quick,
        "benchmarks": {},
    }
    with tempfile.TemporaryDirectory(prefix="zerg-bench-all-") as tmp:
        for benchmark in BENCHMARKS:
            if args.only and benchmark.key not in args.only:
                continue
            output = Path(tmp) / f"{benchmark.key}.json"
            combined["benchmarks"][benchmark.key] = run(benchmark, output, args)
    combined["machine"]["load_average_after"] = load_average()
    combined["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    output = args.output or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(combined, indent=2) + "\n"
    output.write_text(text)
    if args.output is None:
        (RESULTS / "latest.json").write_text(text)
    print("\n".join(summary(combined)))
    print(f"saved {output} ({combined['seconds']:.0f} s in all)")
    failed = [key for key, run in combined["benchmarks"].items() if run["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
