"""http_bench.py's load generators: wrk, or an asyncio keep-alive client, pinned to a core.

``LoadGenerator.run`` runs one timed case and records the CPU used meanwhile by
the server's worker, the load generator and everything else on the machine.
Without wrk, the Python load generator runs as ``python http_loadgen.py
_loadgen '{json}'`` in a pinned subprocess; its ceiling is lower than wrk's.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from common import machine_busy_seconds
from common import process_cpu_seconds

if TYPE_CHECKING:
    from http_bench import Case
    from http_bench import Server

LOADGEN_ARG = "_loadgen"
WRK_INSTALL_HINT = (
    "wrk not found: install it for the reference figures (Debian/Ubuntu: "
    "`apt-get install -y wrk`; macOS: `brew install wrk`); "
    "falling back to the Python load generator, whose ceiling is lower"
)


# --- pinning, CPU accounting ----------------------------------------------------


def pinning_available() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def pinned(command: list[str], core: int | None) -> tuple[list[str], Callable[[], None] | None]:
    """Prefix ``command`` with ``taskset -c core`` (or pin in the child if taskset is missing)."""
    if core is None:
        return command, None
    if shutil.which("taskset"):
        return ["taskset", "-c", str(core), *command], None

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return command, pin


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- load generators ----------------------------------------------------------------


@dataclass
class RunFigures:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors and timeouts
    non_2xx: int
    server_cpu_pct: float = 0.0  # % of one core, the server's worker
    loadgen_cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0  # everything else on the machine, % of one core
    other_on_server_core_pct: float = 0.0  # what else ran on the server's core


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> RunFigures:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rps and total and p50 and p99):
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    errors = sum(
        int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output)
    )  # "Socket errors: connect 0, read 0, write 0, timeout 0"
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return RunFigures(
        rps=float(rps.group(1)),
        p50_ms=_wrk_ms(p50.group(1)),
        p99_ms=_wrk_ms(p99.group(1)),
        requests=int(total.group(1)),
        errors=errors,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


@dataclass
class LoadGenerator:
    kind: str  # "wrk" or "python"
    connections: int
    workdir: Path
    core: int | None
    version: str = ""

    def command(self, case: Case, url: str, duration: float) -> list[str]:
        if self.kind == "wrk":
            command = ["wrk", "-t1", f"-c{self.connections}", f"-d{max(1, round(duration))}s"]
            command += ["--latency", "--timeout", "10s"]
            if case.method != "GET":
                command += ["-s", str(self.lua_script(case))]
            return [*command, url + case.path]
        config = {
            "url": url + case.path,
            "method": case.method,
            "body": case.body,
            "connections": self.connections,
            "duration": duration,
        }
        return [sys.executable, str(Path(__file__).resolve()), LOADGEN_ARG, json.dumps(config)]

    def lua_script(self, case: Case) -> Path:
        path = self.workdir / f"{case.key}.lua"
        if not path.exists():
            lines = [
                f"wrk.method = {json.dumps(case.method)}",
                f"wrk.body = {json.dumps(case.body or '')}",
                'wrk.headers["Content-Type"] = "application/json"',
            ]
            path.write_text("\n".join(lines) + "\n")
        return path

    def run(self, case: Case, url: str, duration: float, server: Server) -> RunFigures:
        """One timed run of ``case``, with the CPU use of everyone during it."""
        command, preexec = pinned(self.command(case, url, duration), self.core)
        before = (
            time.monotonic(),
            process_cpu_seconds(server.worker_pid),
            children_cpu_seconds(),
            machine_busy_seconds(),
            machine_busy_seconds(server.core),
        )
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            preexec_fn=preexec,
            check=False,
        )
        wall = max(time.monotonic() - before[0], 1e-9)
        server_cpu = process_cpu_seconds(server.worker_pid) - before[1]
        loadgen_cpu = children_cpu_seconds() - before[2]
        busy = machine_busy_seconds() - before[3]
        busy_server_core = machine_busy_seconds(server.core) - before[4]
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
        if self.kind == "wrk":
            figures = parse_wrk(done.stdout)
        else:
            figures = RunFigures(**json.loads(done.stdout))
        figures.server_cpu_pct = 100 * server_cpu / wall
        figures.loadgen_cpu_pct = 100 * loadgen_cpu / wall
        figures.other_cpu_pct = max(0.0, 100 * (busy - server_cpu - loadgen_cpu) / wall)
        if server.core is not None:
            figures.other_on_server_core_pct = max(
                0.0, 100 * (busy_server_core - server_cpu) / wall
            )
        return figures


def choose_loadgen(kind: str, connections: int, workdir: Path, core: int | None) -> LoadGenerator:
    if kind in ("auto", "wrk") and shutil.which("wrk"):
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        first = (version.stdout or version.stderr).splitlines()[:1]
        return LoadGenerator("wrk", connections, workdir, core, first[0] if first else "")
    if kind == "wrk":
        raise SystemExit(WRK_INSTALL_HINT.split(";")[0] + " (or pass --loadgen python)")
    if kind == "auto":
        print(WRK_INSTALL_HINT, file=sys.stderr)
    return LoadGenerator(
        "python", connections, workdir, core, f"asyncio, {platform.python_version()}"
    )


# --- the Python load generator (a subprocess: ``http_bench.py _loadgen '{json}'``) ----------


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    non_2xx: int = 0


def _content_length(head: bytes) -> int:
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    return int(match.group(1)) if match else 0


async def _connection(host: str, port: int, request: bytes, deadline: float, tally: _Tally) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            if length:
                await reader.readexactly(length)
            tally.latencies.append(time.perf_counter() - began)
            if head[9:10] not in (b"2", b"3"):
                tally.non_2xx += 1
            if re.search(rb"\r\nconnection:\s*close", head, re.I):
                writer.close()
                writer = None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        tally.errors += 1
    finally:
        if writer is not None:
            writer.close()


async def _drive(config: dict[str, Any]) -> dict[str, Any]:
    url = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", config["url"])
    if not url:
        raise SystemExit(f"unsupported url {config['url']}")
    host, port, path = url.group(1), int(url.group(2)), url.group(3)
    body = (config["body"] or "").encode()
    head = f"{config['method']} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    request = head.encode() + b"\r\n" + body
    tally = _Tally()
    started = time.perf_counter()
    deadline = started + config["duration"]
    tasks = [
        _connection(host, port, request, deadline, tally) for _ in range(config["connections"])
    ]
    try:
        async with asyncio.timeout(config["duration"] + 15):
            await asyncio.gather(*tasks)
    except TimeoutError:
        tally.errors += 1
    elapsed = max(time.perf_counter() - started, 1e-9)
    ordered = sorted(tally.latencies) or [0.0]

    def pct(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000

    return {
        "rps": len(tally.latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "requests": len(tally.latencies),
        "errors": tally.errors,
        "non_2xx": tally.non_2xx,
    }


def loadgen_main(argv: list[str]) -> int:
    print(json.dumps(asyncio.run(_drive(json.loads(argv[0])))))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != [LOADGEN_ARG]:
        raise SystemExit(f"usage: {sys.argv[0]} {LOADGEN_ARG} '{{json config}}'")
    sys.exit(loadgen_main(sys.argv[2:]))
