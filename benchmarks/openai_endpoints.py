"""Throughput of the openai backend through 1, 2 and 4 endpoints.

    python benchmarks/openai_endpoints.py [--jobs 24] [--url URL ...]

Without --url it starts simulated servers in this process: each answers one request at a time
(like llama.cpp with one slot) and streams 32 tokens at 10 ms each, so the numbers show the
client's scheduling and overhead, not a model. With --url (repeatable) it measures real servers,
using the first 1, 2, ... of them. Prints tok/s and the speed-up over one endpoint.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from convogen_tui.core.making.experiment import load_experiment
from convogen_tui.core.making.pipeline import Job, Pipeline, RunFinished
from convogen_tui.core.making.seeds import Seed
from convogen_tui.llm.openai_compat import OpenAIBackend

REPO = Path(__file__).resolve().parent.parent
TOKENS = 32
TOKEN_S = 0.01


def simulated_server() -> str:
    """A serial fake server on 127.0.0.1; returns its base URL."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, code: int, body: bytes = b"") -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.endswith("/models"):
                self._reply(200, json.dumps({"data": [{"id": "simulated"}]}).encode())
            else:
                self._reply(404)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not self.path.endswith("completions"):
                self._reply(404)
                return
            with lock:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for i in range(TOKENS):
                    time.sleep(TOKEN_S)
                    choice = {"text": " w", "finish_reason": "length" if i == TOKENS - 1 else None}
                    self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--url", action="append", help="a real server (repeatable)")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    urls = args.url or [simulated_server() for _ in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(REPO / "datasets", Path(tmp) / "datasets")
        experiment = load_experiment(Path(tmp) / "datasets" / "inst-templates" / "sample")
        grid = experiment.personas()
        sampling = experiment.sampling.model_copy(update={"max_tokens": TOKENS})
        base = 0.0
        for n in sorted({1, 2, 4, len(urls)}):
            if n > len(urls):
                continue
            backend = OpenAIBackend(urls[:n], concurrency=args.concurrency)
            pipeline = Pipeline(experiment, backend, sampling=sampling)
            stamp = time.time_ns()
            jobs = [
                Job(Seed(f"{stamp}-{i}", f"seed {stamp} {i}"), grid[i % len(grid)], i)
                for i in range(args.jobs)
            ]
            for event in pipeline.run(jobs, restyle=False, parallel=backend.slots):
                if isinstance(event, RunFinished):
                    rate = event.tokens_per_second
                    base = base or rate
                    print(
                        f"{n} endpoint(s): {event.conversations} conversations, {event.completion_tokens} "
                        f"tokens in {event.elapsed_s:.2f} s = {rate:.1f} tok/s (x{rate / base:.2f})"
                    )
            backend.close()


if __name__ == "__main__":
    main()
