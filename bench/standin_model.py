"""A slow OpenAI-compatible model for benchmarks: every reply streams a piece every N seconds.

``tests/openai_standin.py`` serves the tests with a thread per request, which is
right for scripted replies but not for hundreds of slow streams at once. This
one speaks the same protocol (``POST /v1/chat/completions`` with ``stream``,
``stream_options.include_usage``, SSE chunks, ``[DONE]``; ``GET /v1/models``)
on asyncio, so 500 open streams cost it little. ``GET /stats`` answers how many
streams are open, the most that were open at once, and how many were served.

    python bench/standin_model.py --port 8100 --pieces 60 --interval 0.5

It prints ``ready`` on stdout once it listens, and runs until it is terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

MODEL = "standin"


@dataclass
class Stats:
    open: int = 0
    peak: int = 0
    served: int = 0


def chunk(created: int, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-bench-{created}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": choices,
        **extra,
    }


class StandIn:
    """One asyncio server; each connection may carry several requests (keep-alive)."""

    def __init__(self, pieces: int, interval: float) -> None:
        self.pieces = pieces
        self.interval = interval
        self.stats = Stats()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = dict(
                    (name.strip().lower(), value.strip())
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                )
                length = int(headers.get("content-length", "0"))
                body = json.loads(await reader.readexactly(length)) if length else {}
                await self.answer(method, path.split("?")[0], body, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def answer(self, method: str, path: str, body: Any, writer: asyncio.StreamWriter) -> None:
        if method == "GET" and path.endswith("/models"):
            listing = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
            await respond(writer, 200, listing)
        elif method == "GET" and path == "/stats":
            await respond(writer, 200, vars(self.stats))
        elif method == "POST" and path.endswith("/chat/completions"):
            await self.stream(body, writer)
        else:
            await respond(writer, 404, {"error": {"message": f"no route {method} {path}"}})

    async def stream(self, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        """Stream ``pieces`` deltas, the first at once, then one per ``interval``."""
        created = int(time.time())
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
        )
        self.stats.open += 1
        self.stats.peak = max(self.stats.peak, self.stats.open)
        try:
            for number in range(self.pieces):
                if number:
                    await asyncio.sleep(self.interval)
                delta = {"content": f"piece {number} "}
                await send_event(writer, chunk(created, [choice(delta)]))
            await send_event(writer, chunk(created, [choice({}, "stop")]))
            options = body.get("stream_options") or {}
            if options.get("include_usage"):
                usage = {"prompt_tokens": 1, "completion_tokens": self.pieces}
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                await send_event(writer, chunk(created, [], usage=usage))
            await send_event(writer, "[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self.stats.served += 1
        finally:
            self.stats.open -= 1


def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish_reason}


async def send_event(writer: asyncio.StreamWriter, payload: Any) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    data = f"data: {text}\n\n".encode()
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def respond(writer: asyncio.StreamWriter, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    reason = "OK" if status == 200 else "Not Found"
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()


async def main(args: argparse.Namespace) -> None:
    standin = StandIn(args.pieces, args.interval)
    server = await asyncio.start_server(standin.serve, args.host, args.port, backlog=2048)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    print("ready", flush=True)
    async with server:
        await stopped.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pieces", type=int, default=60, help="deltas per reply")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between deltas")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
