"""The capture's per-process record buffer and the thread that writes it to JSONL files.

Standard library only and Python 3.8+ syntax (it runs in the target's own interpreter);
loaded by ``perfagents_sqlcapture.install``, never imported on its own.

On the hot path the capture modules only append a list to ``CaptureLog.records``: a statement
[ts, duration_ms, sql, thread, request holder, params, rowcount, fetched rows, stack] (fetch
times and row counts are added to it in place after ``execute`` returned), or to
``CaptureLog.waits``: a connection-pool acquisition [ts, wait_ms, pool name, pool class,
max_size, thread, request holder, ok]. A daemon thread turns them into rows every
FLUSH_INTERVAL_S and appends each batch as one JSON array per line, encoded in one call:

- ``<folder>/sql-<pid>-<ms>.jsonl``: statements, written one interval late so that fetches
  are included; row: ts, duration_ms, sql, pid, thread, request_id, method, path, route, rows,
  params, stack, request_name (the Locust name the request carried). Statement text longer
  than MAX_SQL_CHARS is cut; a non-str statement (bytes, a psycopg ``sql.Composable``) is
  rendered here, off the hot path. (``stack`` and ``request_name`` were added last: readers
  accept rows without them.)
- ``<folder>/pool-<pid>-<ms>.jsonl``: pool waits; row: ts, wait_ms, pool name, pool class,
  max_size, pid, thread, request_id, method, path, route, ok (false when getconn raised),
  request_name.

``flush()`` (``final=True``) writes everything buffered: the capture calls it at exit and at
uvicorn's shutdown. ``after_fork()`` gives a forked child (gunicorn workers) its own buffers,
files and writer thread. A write error stops the capture with one warning.
"""

import json
import os
import threading
import time

FLUSH_INTERVAL_S = 0.25
PAUSE_FILE = "paused"  # while this file is in the log folder nothing is recorded (a window that decides)
MAX_SQL_CHARS = 20000
# Bounds on what the capture keeps: a parameter value longer than this is cut (a blob keeps only
# its length), and a process's files stop growing past MAX_LOG_BYTES (one warning; the agent
# reads what was written). Parameters are kept for the first executions of a statement only.
MAX_PARAM_CHARS = 1000
MAX_LOG_BYTES = 256 * 1024 * 1024

_now = time.time


class CaptureLog:
    """The per-process record buffers and their writer thread."""

    def __init__(self, folder, warn):
        self.folder = folder
        self._warn = warn  # one-line, once-per-process warning on stderr
        self._reset()

    def _reset(self):
        self.pid = os.getpid()
        self.records = []
        self.pending = []
        self.waits = []  # connection-pool acquisitions (perfagents_pgcapture)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        started_ms = int(_now() * 1000)
        self.path = os.path.join(self.folder, f"sql-{self.pid}-{started_ms}.jsonl")
        self.waits_path = os.path.join(self.folder, f"pool-{self.pid}-{started_ms}.jsonl")
        self.started = False
        self.failed = False
        self.written = 0
        self.paused = self._pause_requested()

    def _pause_requested(self):
        try:
            return os.path.exists(os.path.join(self.folder, PAUSE_FILE))
        except Exception:
            return False

    def start(self):
        if self.started:
            return
        self.started = True
        thread = threading.Thread(target=self._run, name="perfagents-sqlcapture", daemon=True)
        thread.start()

    def after_fork(self):
        """In a forked child: own buffer and file; a writer thread if the parent had one."""
        was_started = self.started
        self._reset()
        if was_started:
            self.start()

    def _run(self):
        while not self.stop.wait(FLUSH_INTERVAL_S):
            self.paused = self._pause_requested()
            try:
                self.flush(final=False)
            except Exception as exc:  # keep draining the buffer whatever happens
                self._warn(f"flush failed ({exc})")

    def flush(self, final=True):
        with self.lock:
            current, self.records = self.records, []
            if final:
                batch, self.pending = self.pending + current, []
            else:
                batch, self.pending = self.pending, current
            waits, self.waits = self.waits, []
            if batch and not self.failed:
                self._write(self.path, batch, _row)
            if waits and not self.failed:
                self._write(self.waits_path, waits, _wait_row)

    def _write(self, path, batch, to_row):
        pid = self.pid
        rows = []
        for rec in batch:
            try:
                rows.append(to_row(rec, pid))
            except Exception:
                continue
        try:
            line = json.dumps(rows, default=str) + "\n"
            if self.written + len(line) > MAX_LOG_BYTES:
                self.failed = True
                self._warn(f"the capture's files reached {MAX_LOG_BYTES} bytes; capture stopped")
                return
            with open(path, "a", encoding="utf-8") as out:
                out.write(line)
            self.written += len(line)
        except (OSError, ValueError) as exc:
            self.failed = True
            self._warn(f"cannot write {path} ({exc}); capture stopped")


def _request_fields(holder):
    """(request_id, method, path, route, name) of a request holder (perfagents_requestctx), all
    None outside a request."""
    if holder is None:
        return None, None, None, None, None
    request_id, method, path, scope, name = holder
    route = getattr(scope.get("route"), "path", None) if scope else None
    return request_id, method, path, route, name


def _row(rec, pid):
    ts, duration_ms, sql, thread, holder, params, rowcount, fetched, stack = rec
    request_id, method, path, route, name = _request_fields(holder)
    if not isinstance(sql, str):
        sql = _sql_text(sql)
    if len(sql) > MAX_SQL_CHARS:
        sql = sql[:MAX_SQL_CHARS]
    rows = rowcount if rowcount is not None and rowcount >= 0 else fetched
    if params is not None:
        params = _encode_params(params)
    return [ts, duration_ms, sql, pid, thread, request_id, method, path, route, rows, params, stack, name]


def _wait_row(rec, pid):
    ts, wait_ms, pool, pool_class, max_size, thread, holder, ok = rec
    request_id, method, path, route, name = _request_fields(holder)
    return [ts, wait_ms, pool, pool_class, max_size, pid, thread, request_id, method, path, route, ok, name]


def _sql_text(sql):
    """A statement that is not a str: bytes decoded, a psycopg ``sql.Composable`` rendered."""
    if isinstance(sql, (bytes, bytearray, memoryview)):
        return bytes(sql).decode("utf-8", "replace")
    as_string = getattr(sql, "as_string", None)
    if as_string is not None:
        try:
            return as_string(None)
        except Exception:
            pass
    return str(sql)


def _encode_value(value):
    if value is None or isinstance(value, (int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return {"$bytes": data.hex()} if len(data) * 2 <= MAX_PARAM_CHARS else {"$bytes_len": len(data)}
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[:MAX_PARAM_CHARS]


def _encode_params(params):
    if params is None:
        return None
    if isinstance(params, dict):
        return {str(k): _encode_value(v) for k, v in params.items()}
    try:
        return [_encode_value(v) for v in params]
    except TypeError:
        return None
