"""capacity.py's report: every figure of every worker class side by side, ratio, PASS/FAIL."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from typing import Any

ROUTES = {
    "health": "GET /api/health",
    "agent": "GET /api/agents/{id}",
    "agents": "GET /api/agents?limit=100",
    "messages": "GET /api/threads/{id}/messages?limit=50",
    "post_message": "POST /api/threads/{id}/messages",
}
HTTP_RATIO_TARGET = 0.9


@dataclass
class Figure:
    name: str
    target: str
    values: dict[str, float | None] = field(default_factory=dict)  # for the ratio
    shown: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # PASS, FAIL; none: no target

    def put(self, worker_class: str, value: float | None, shown: str, ok: bool | None) -> None:
        self.values[worker_class] = value
        self.shown[worker_class] = shown
        if ok is not None:
            self.verdicts[worker_class] = "PASS" if ok else "FAIL"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "values": self.values,
            "shown": self.shown,
            "verdicts": self.verdicts,
        }


def ms(value: float) -> str:
    return "timeout" if math.isinf(value) else f"{value:.1f}"


def percentile(values: list[float | None], fraction: float) -> float:
    """Nearest rank; ``None`` (never happened) counts as slower than anything."""
    ordered = sorted(math.inf if value is None else value for value in values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(len(ordered) * fraction - 1e-9)) - 1]


def idle_figures(worker_class: str, idle: dict[str, Any], figures: dict[str, Figure]) -> None:
    sockets = idle["sockets"]
    held = idle["held"]
    note = ""
    if idle["failed"]:
        kinds = ", ".join(f"{count} {kind}" for kind, count in idle["errors"].items())
        note = f" ({kinds})"
    dropped = held - idle.get("open_at_stop", held)
    figures["held"].put(
        worker_class,
        held,
        f"{held}/{sockets}{note}" + (f", {dropped} dropped" if dropped else ""),
        held == sockets and not dropped,
    )
    figures["ramp"].put(worker_class, idle["ramp_seconds"], f"{idle['ramp_seconds']:.1f}", None)
    get = idle["get"]
    failed = f" ({get.failures} of {len(get.latencies)} failed)" if get.failures else ""
    p50, p99 = get.percentile_ms(0.5), get.percentile_ms(0.99)
    figures["get_p50"].put(worker_class, p50, ms(p50), None)
    figures["get_p99"].put(worker_class, p99, ms(p99) + failed, p99 < 50)
    kb = idle["kb_per_socket"]
    shown = "n/a" if kb is None else f"{kb:.1f}"
    figures["memory"].put(worker_class, kb, shown, kb is not None and kb <= 100)
    cpu = idle["idle_cpu_pct"]
    others = f" (clients {idle['clients_cpu_pct']:.0f}%, others {idle['others_cpu_pct']:.0f}%)"
    figures["idle_cpu"].put(worker_class, cpu, f"{cpu:.1f}{others}", cpu < 10)


def fanout_figures(worker_class: str, fanout: dict[str, Any], figures: dict[str, Figure]) -> None:
    result = fanout["result"]
    clean = not (result.lost or result.duplicates or result.out_of_order or result.client_errors)
    figures["fanout"].put(
        worker_class,
        result.delivered,
        f"{result.delivered}/{result.expected}, lost {result.lost}, dup {result.duplicates}, "
        f"reordered {result.out_of_order}"
        + (f", {result.client_errors} clients dropped" if result.client_errors else ""),
        clean,
    )
    p99 = result.p99_ms
    cpu = f" (cpu: workers {result.server_cpu_pct:.0f}%, clients " + (
        "n/a)" if result.clients_cpu_pct is None else f"{result.clients_cpu_pct:.0f}%)"
    )
    figures["fanout_p99"].put(worker_class, p99, f"{p99:.1f}{cpu}", clean and p99 < 250)


def runs_figures(worker_class: str, runs: Any, figures: dict[str, Figure]) -> None:
    others = {status: n for status, n in runs.statuses.items() if status != "success"}
    rest = ", ".join(f"{n} {status}" for status, n in sorted(others.items()))
    figures["runs"].put(
        worker_class,
        runs.succeeded,
        f"{runs.succeeded}/{runs.runs}" + (f" ({rest})" if rest else ""),
        runs.succeeded == runs.runs,
    )
    p50, p99 = percentile(runs.first_piece, 0.5), percentile(runs.first_piece, 0.99)
    never = sum(1 for value in runs.first_piece if value is None)
    # Where the time went: waiting for the POST's answer, then for the first piece.
    split = ""
    if runs.answered and runs.answered_to_first:
        answered, then = percentile(runs.answered, 0.5), percentile(runs.answered_to_first, 0.5)
        split = f" (answered {answered:.2f}, then {then:.2f})"
    shown = "never" if math.isinf(p50) else f"{p50:.2f}{split}"
    figures["first_p50"].put(worker_class, p50, shown, None)
    figures["first_p99"].put(
        worker_class,
        p99,
        ("never" if math.isinf(p99) else f"{p99:.2f}") + (f" ({never} never)" if never else ""),
        p99 < 1.0,
    )
    probe = runs.probe
    http99 = probe.percentile_ms(0.99)
    failed = f" ({probe.failures} of {len(probe.latencies)} failed)" if probe.failures else ""
    figures["runs_http"].put(worker_class, http99, ms(http99) + failed, http99 < 100)
    figures["streams"].put(worker_class, runs.peak_streams, str(runs.peak_streams), None)


def http_figures(candidate: str, http: dict[str, Any], figures: dict[str, Figure]) -> None:
    rows = http["rows"]
    for key, label in ROUTES.items():
        base, other = rows.get(f"gthread_{key}"), rows.get(key)
        if base is None or other is None:
            continue
        figure = figures.setdefault(
            f"http_{key}", Figure(f"req/s {label}", f">= {HTTP_RATIO_TARGET} x gthread")
        )
        figure.put("gthread", base["rps"], f"{base['rps']:.0f}", None)
        ok = base["rps"] > 0 and other["rps"] / base["rps"] >= HTTP_RATIO_TARGET
        errors = f" ({other['errors']} errors)" if other["errors"] else ""
        figure.put(candidate, other["rps"], f"{other['rps']:.0f}{errors}", ok and not errors)


def empty_figures(args: argparse.Namespace) -> dict[str, Figure]:
    return {
        "held": Figure(f"idle: websockets held of {args.sockets}", "all"),
        "ramp": Figure("idle: seconds to open them", "-"),
        "get_p50": Figure("idle: GET /api/agents p50 ms", "-"),
        "get_p99": Figure("idle: GET /api/agents p99 ms", "< 50"),
        "memory": Figure("idle: server KB per socket", "<= 100"),
        "idle_cpu": Figure("idle: workers' CPU % of a core", "< 10"),
        "fanout": Figure(f"fan-out to {args.fanout_clients}: delivered", "none lost/dup/reordered"),
        "fanout_p99": Figure("fan-out: p99 delivery ms", "< 250"),
        "runs": Figure(f"runs: {args.runs} at once, ended success", "all"),
        "first_p50": Figure("runs: first piece p50 s", "-"),
        "first_p99": Figure("runs: first piece p99 s", "< 1"),
        "runs_http": Figure("runs: GET /api/agents p99 ms", "< 100"),
        "streams": Figure("runs: model streams open at once (peak)", "-"),
    }


SECTIONS: dict[str, tuple[Callable[[str, Any, dict[str, Figure]], None], tuple[str, ...]]] = {
    "idle": (idle_figures, ("held", "ramp", "get_p50", "get_p99", "memory", "idle_cpu")),
    "fanout": (fanout_figures, ("fanout", "fanout_p99")),
    "runs": (runs_figures, ("runs", "first_p50", "first_p99", "runs_http", "streams")),
}


def build(
    measured: dict[str, dict[str, Any]], http: dict[str, Any], args: argparse.Namespace
) -> tuple[list[Figure], list[str]]:
    figures = empty_figures(args)
    notes: list[str] = []
    for worker_class, sections in measured.items():
        for section, (fill, keys) in SECTIONS.items():
            data = sections.get(section)
            if data is None:
                continue
            if isinstance(data, dict) and "skipped" in data:
                notes.append(f"{worker_class} {section}: not measured: {data['skipped']}")
                if str(data["skipped"]).startswith("--skip"):
                    continue  # left out on request: no figures, no verdicts
                for key in keys:
                    figures[key].put(worker_class, None, "not measured", False)
                continue
            fill(worker_class, data, figures)
            problems = getattr(data, "problems", None)
            if problems:
                notes.append(f"{worker_class} {section}: {len(problems)} problem(s): {problems[0]}")
        idle = sections.get("idle")
        if isinstance(idle, dict) and idle.get("first_error"):
            notes.append(f"{worker_class} idle: first failed handshake: {idle['first_error']}")
    if "rows" in http:
        http_figures(args.worker_class, http, figures)
    elif args.worker_class != "gthread":
        notes.append(f"http: not measured: {http.get('skipped')}")
    return [figure for figure in figures.values() if figure.shown], notes


def print_report(
    measured: dict[str, dict[str, Any]], http: dict[str, Any], args: argparse.Namespace
) -> list[Figure]:
    figures, notes = build(measured, http, args)
    classes = list(measured)
    candidate = classes[-1]
    headers = ["figure", "target", *classes]
    if len(classes) > 1:
        headers.append(f"{candidate}/gthread")
    headers.append("verdict")
    table = [headers]
    for figure in figures:
        row = [figure.name, figure.target]
        for worker_class in classes:
            verdict = figure.verdicts.get(worker_class)
            cell = figure.shown.get(worker_class, "-")
            row.append(f"{cell} {verdict}" if verdict and len(classes) > 1 else cell)
        if len(classes) > 1:
            base, value = figure.values.get("gthread"), figure.values.get(candidate)
            finite = base is not None and value is not None and math.isfinite(base + value)
            row.append(f"{value / base:.2f}" if finite and base else "-")  # type: ignore[operator]
        row.append(figure.verdicts.get(candidate, ""))
        table.append(row)
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    print()
    print(f"capacity of the production setup (2 workers, PostgreSQL, Redis): {', '.join(classes)}")
    for number, line in enumerate(table):
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=False)))
        if number == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for note in notes:
        print(f"note: {note}")
    verdicts = [figure.verdicts.get(candidate) for figure in figures]
    failed = [figure.name for figure in figures if figure.verdicts.get(candidate) == "FAIL"]
    print(
        f"{candidate}: {verdicts.count('PASS')} PASS, {len(failed)} FAIL"
        + (f" ({'; '.join(failed)})" if failed else "")
    )
    return figures
