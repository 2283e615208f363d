"""Fuzz for longer than CI does: the same tests as tests/test_fuzz.py, many more examples.

schemathesis sends every HTTP operation ``--examples`` generated requests per
phase (valid and invalid, in-process on a temporary database) with the checks
not_a_server_error, status_code_conformance, response_schema_conformance and
negative_data_rejection; the websocket fuzzer sends ``--frames`` random and
malformed frames over a real socket. CI runs 25 examples and 400 frames with a
fixed seed; this explores new HTTP examples on every run unless
``--deterministic`` is given, and takes the frames' seed from ``--seed``.

    .venv/bin/python bench/fuzz_long.py                         # 500 examples, 5000 frames
    .venv/bin/python bench/fuzz_long.py --examples 2000 --frames 20000 --seed 7
    TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/fuzz_long.py                     # on PostgreSQL

It stops by itself after ``--max-minutes`` (default 60) and exits non-zero on
any failure; pytest prints each failing case with a curl line to reproduce it.
Extra arguments after ``--`` go to pytest (e.g. ``-- -k threads -x``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="per operation and phase")
    parser.add_argument("--frames", type=int, default=5000, help="websocket frames")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="frames' seed")
    parser.add_argument("--deterministic", action="store_true", help="CI's HTTP examples")
    parser.add_argument("--max-minutes", type=float, default=60)
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --)")
    args = parser.parse_args()
    env = {
        **os.environ,
        "ZERG_FUZZ_EXAMPLES": str(args.examples),
        "ZERG_FUZZ_FRAMES": str(args.frames),
        "ZERG_FUZZ_SEED": str(args.seed),
        "ZERG_FUZZ_RANDOM": "0" if args.deterministic else "1",
    }
    command = [sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-q", "-p", "no:cacheprovider"]
    command += ["--durations=5", *args.pytest_args]
    database = os.environ.get("TEST_DATABASE_URL", "a SQLite file per test")
    print(
        f"fuzzing on {database}: {args.examples} examples per operation and phase, "
        f"{args.frames} frames (seed {args.seed}), "
        f"{'fixed' if args.deterministic else 'new'} HTTP examples",
        flush=True,
    )
    started = time.monotonic()
    try:
        code = subprocess.run(command, cwd=ROOT, env=env, timeout=args.max_minutes * 60).returncode
    except subprocess.TimeoutExpired:
        print(f"stopped after {args.max_minutes} minutes", flush=True)
        return 2
    print(f"{'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
