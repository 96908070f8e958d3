"""A tiny real target for the lifecycle tests (stdlib only, so any interpreter can run it).

Environment:
  APP_PID_FILE       write this process's pid there at startup
  APP_EXIT_MESSAGE   print it to stderr and exit 3 before serving
  APP_READY_DELAY_S  /health answers 503 until this many seconds passed
  APP_CHILDREN=1     spawn two sleeping children: one in our process group, one in its own session
  APP_IGNORE_TERM=1  ignore SIGTERM (the children inherit it)
  APP_GREETING, APP_FLAG   echoed by GET /  (knobs applied via env)
Endpoints: GET /health, GET / (JSON about this process), GET|PUT /admin/config (cache_ttl_s >= 0).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHILD_SLEEP_S = 120
STARTED = time.monotonic()
CONFIG: dict[str, object] = {"cache_ttl_s": 0}
CHILDREN: list[subprocess.Popen[bytes]] = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep the log short
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            ready = time.monotonic() - STARTED >= float(os.environ.get("APP_READY_DELAY_S", "0"))
            self._send(200 if ready else 503, {"ready": ready})
        elif self.path == "/admin/config":
            self._send(200, CONFIG)
        elif self.path == "/":
            self._send(200, {
                "pid": os.getpid(),
                "children": [c.pid for c in CHILDREN],
                "executable": sys.executable,
                "cwd": os.getcwd(),
                "greeting": os.environ.get("APP_GREETING"),
                "flag": os.environ.get("APP_FLAG"),
                "extra": os.environ.get("APP_EXTRA"),
            })
        else:
            self._send(404, {"error": "not found"})

    def do_PUT(self) -> None:
        if self.path != "/admin/config":
            self._send(404, {"error": "not found"})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if int(body.get("cache_ttl_s", 0)) < 0:
            self._send(400, {"error": "cache_ttl_s must be >= 0"})
            return
        CONFIG.update(body)
        self._send(200, CONFIG)


def spawn_children() -> None:
    sleeper = [sys.executable, "-c", f"import time; time.sleep({CHILD_SLEEP_S})"]
    CHILDREN.append(subprocess.Popen(sleeper))
    CHILDREN.append(subprocess.Popen(sleeper, start_new_session=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if os.environ.get("APP_PID_FILE"):
        with open(os.environ["APP_PID_FILE"], "w") as f:
            f.write(str(os.getpid()))
    if os.environ.get("APP_EXIT_MESSAGE"):
        print(os.environ["APP_EXIT_MESSAGE"], file=sys.stderr, flush=True)
        sys.exit(3)
    if os.environ.get("APP_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("APP_CHILDREN") == "1":
        spawn_children()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on port {args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
