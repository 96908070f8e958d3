"""A Locust listener that records every request: add it with ``-f user.py,listener.py``.

It runs inside the Locust process (gevent-patched), so it imports nothing from perfagents.
Set ``PERFAGENTS_SAMPLES_PATH`` to the CSV to write (``{pid}`` in it is replaced by the
process id, for several local workers); without it the listener does nothing. In a master
and workers run (tasks/load/distributed.py) only the workers record, each in its own file.

Columns (tasks/load/samples.py ``SAMPLE_SCHEMA``): ts (epoch s, request start), endpoint
(the Locust name), method, latency_ms, status (0: no HTTP response), bytes, error (empty
when Locust counted a success; ``HTTP <status>`` for a 4xx/5xx; else the exception text).
Rows go through a large write buffer, flushed at least every FLUSH_EVERY_S (so the run can
show the window's progress while it runs: tasks/live.py) and on test_stop and quitting. A small
JSON file next to it (``<samples>.meta.json``) records when the test started and stopped,
how many rows were written, and how many exceptions escaped the locustfile's tasks.

Every request given a ``name=`` carries it in the ``X-Perfagents-Request`` header
(percent-encoded), so the target's injected capture (tasks/agents/database/sqlcapture/inject/
perfagents_requestctx.py) files each statement under the Locust name its sample has: exact
attribution whatever the server. Requests without a name are recorded under their path, which
the capture sees anyway. ``PERFAGENTS_MARK_REQUESTS=0`` turns the header off.
"""

from __future__ import annotations

import atexit
import csv
import json
import os
import time

from locust import events

SAMPLES_ENV = "PERFAGENTS_SAMPLES_PATH"
RUN_ENV = "PERFAGENTS_RUN_S"  # the run time in seconds, fractions kept (Locust's --run-time takes whole ones)
MARK_ENV = "PERFAGENTS_MARK_REQUESTS"
MARK_HEADER = "X-Perfagents-Request"  # inject/perfagents_requestctx.py reads it
FASTHTTP_HEADERS_ARG = 3  # FastHttpSession.request(method, url, name, data, catch_response, stream, headers, ...)
META_SUFFIX = ".meta.json"
BUFFER_BYTES = 1 << 20
FLUSH_EVERY_S = 1.0  # the live window's freshness (tasks/live.py); one write(2) a second costs nothing measurable
ERROR_MAX_CHARS = 300
COLUMNS = ("ts", "endpoint", "method", "latency_ms", "status", "bytes", "error")
HTTP_ERROR_TYPES = frozenset({"HTTPError", "LocustBadStatusCode"})  # raise_for_status()'s


class _Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.meta: dict[str, float | int | str | None] = {
            "pid": os.getpid(), "test_start": None, "test_stop": None, "rows": 0,
            "user_errors": 0, "first_user_error": None}
        self._file = open(path, "w", newline="", buffering=BUFFER_BYTES)  # noqa: SIM115 - closed on quit
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self.rows = 0
        self._flushed = time.monotonic()

    def on_request(self, request_type, name, response_time, response_length, response=None,
                   exception=None, start_time=None, **_kwargs) -> None:
        try:
            status = int(getattr(response, "status_code", 0) or 0)
        except Exception:  # an odd response object must not cost the sample
            status = 0
        latency = float(response_time or 0.0)
        ts = start_time if start_time is not None else time.time() - latency / 1000.0
        try:
            self._writer.writerow((ts, name, request_type, latency, status, int(response_length or 0),
                                   describe_error(exception, status)))
        except ValueError:  # file already closed: Locust is quitting
            return
        self.rows += 1
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self._flushed = time.monotonic()
            try:
                self._file.flush()
            except (OSError, ValueError):  # a full disk shows at close; a closed file means quitting
                pass

    def on_user_error(self, exception=None, **_kwargs) -> None:
        """An exception escaped a task (not a failed request): counted, first one kept."""
        self.meta["user_errors"] = int(self.meta["user_errors"] or 0) + 1
        if self.meta["first_user_error"] is None:
            self.meta["first_user_error"] = f"{type(exception).__name__}: {describe_error(exception, 0)}"

    def flush(self) -> None:
        if self._file.closed:
            return
        self._file.flush()
        self.meta["rows"] = self.rows
        tmp = self.path + META_SUFFIX + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.meta, fh)
        os.replace(tmp, self.path + META_SUFFIX)

    def close(self) -> None:
        self.flush()
        self._file.close()


def describe_error(exception: BaseException | str | None, status: int) -> str | None:
    if exception is None:
        return None
    if status >= 400 and type(exception).__name__ in HTTP_ERROR_TYPES:
        return f"HTTP {status}"
    text = str(exception) or type(exception).__name__
    return " ".join(text.split())[:ERROR_MAX_CHARS]


def _marked(original, headers_arg: int | None):
    """``request`` that adds the Locust name as a header (``headers_arg``: its positional index
    after ``name``, when the session accepts headers positionally)."""
    from urllib.parse import quote

    def request(self, method, url, name=None, *args, **kwargs):
        if name:
            mark = {MARK_HEADER: quote(str(name), safe=" /:{}[]()_-.,=&?*@!~")}
            if headers_arg is not None and len(args) > headers_arg:
                args = (*args[:headers_arg], {**mark, **(args[headers_arg] or {})}, *args[headers_arg + 1:])
            else:
                kwargs["headers"] = {**mark, **(kwargs.get("headers") or {})}
        return original(self, method, url, name, *args, **kwargs)

    request._perfagents = True  # type: ignore[attr-defined]
    return request


def mark_requests() -> None:
    """Patch Locust's HTTP sessions (both clients) to send the request name header."""
    from locust.clients import HttpSession
    from locust.contrib.fasthttp import FastHttpSession

    for cls, headers_arg in ((HttpSession, None), (FastHttpSession, FASTHTTP_HEADERS_ARG)):
        if not getattr(cls.request, "_perfagents", False):
            cls.request = _marked(cls.request, headers_arg)  # type: ignore[method-assign]


_recorder: _Recorder | None = None


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    global _recorder
    path = os.environ.get(SAMPLES_ENV)
    if not path or _recorder is not None:
        return
    if type(environment.runner).__name__ == "MasterRunner":  # workers make the requests
        return
    if os.environ.get(MARK_ENV, "1") != "0":
        mark_requests()
    _recorder = _Recorder(path.replace("{pid}", str(os.getpid())))
    environment.events.request.add_listener(_recorder.on_request)
    environment.events.user_error.add_listener(_recorder.on_user_error)
    atexit.register(_recorder.close)


@events.test_start.add_listener
def _on_test_start(environment=None, **_kwargs) -> None:
    if _recorder is not None and _recorder.meta["test_start"] is None:
        _recorder.meta["test_start"] = time.time()
        _recorder.flush()
    quit_on_time(getattr(environment, "runner", None))


def quit_on_time(runner) -> None:
    """Quit ``PERFAGENTS_RUN_S`` seconds after the test started, as ``--run-time`` would but to
    the fraction of a second: a 4.5 s plan rounded up to Locust's whole seconds ran 5. The
    caller still passes ``--run-time`` (rounded up, plus one), so a quit that never comes costs
    at most that second. Workers are quit by their master."""
    seconds = os.environ.get(RUN_ENV)
    if not seconds or runner is None or type(runner).__name__ == "WorkerRunner":
        return
    import gevent

    gevent.spawn_later(float(seconds), runner.quit)


@events.test_stop.add_listener
def _on_test_stop(environment=None, **_kwargs) -> None:
    if _recorder is not None:
        _recorder.meta["test_stop"] = time.time()
        _recorder.flush()
    send_last_stats(getattr(environment, "runner", None))


def send_last_stats(runner) -> None:
    """A worker's stats since its last report go to the master now, as its users stop, rather than
    in the final report its master waits only 0.5 s for after quitting: on a busy machine that
    report can come too late, and the master's total would miss requests the samples have."""
    if type(runner).__name__ != "WorkerRunner":
        return
    try:
        runner._send_stats()
    except Exception:  # a private method of Locust's: its absence costs only the early report
        pass


@events.quitting.add_listener
def _on_quitting(**_kwargs) -> None:
    if _recorder is not None:
        _recorder.close()
