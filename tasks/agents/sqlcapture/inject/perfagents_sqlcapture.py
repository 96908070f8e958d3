"""SQLite (and psycopg 3) statement capture, injected into a target process by the sitecustomize next to it.

Standard library only and Python 3.8+ syntax: this runs inside the target's own interpreter,
which may be another virtualenv or another Python version than the toolkit's.

What it does, only when PERFAGENTS_SQL_LOG names a folder:
- ``sqlite3.connect`` (and ``sqlite3.dbapi2.connect``) create connections of a Connection
  subclass (a subclass of the caller's ``factory`` when one is given) whose
  execute/executemany/executescript, and whose cursors' execute/executemany/fetch*, are timed
  with ``time.perf_counter``. ``Connection.execute`` is covered too: CPython's C shortcut
  bypasses Python-level cursor hooks, which is why OpenTelemetry's instrumentation misses it.
- psycopg 3: when the target imports ``psycopg.cursor`` / ``psycopg.cursor_async``, the
  cursors' execute/executemany are timed (perfagents_pgcapture, loaded only then).
- ``uvicorn.config.Config.load`` wraps the loaded ASGI app in a tiny middleware that sets a
  ContextVar per HTTP request (id, method, path, and the scope, whose Starlette route gives the
  path template); contextvars follow requests into Starlette's thread pool. Uvicorn's
  ``Server.shutdown`` flushes the buffer (uvicorn re-raises SIGTERM after it, skipping atexit).
- Records are appended to an in-memory list on the hot path; a daemon thread writes them to
  ``<folder>/sql-<pid>-<ms>.jsonl`` every FLUSH_INTERVAL_S (one JSON array of records per line,
  encoded in one call), one interval late so that fetch times added after ``execute`` returned
  are included; the rest is written at exit.
  A forked child (gunicorn workers) gets its own buffer, file and thread.

Record format (a JSON array): ts, duration_ms, sql, pid, thread, request_id, method, path,
route, rows, params, stack. For the first PARAMS_PER_SQL executions of each SQL text (at most
MAX_TRACKED_SQL texts) the record keeps the parameters (for EXPLAIN and what-if timing) and
the call stack of the target's own code: up to MAX_STACK_FRAMES ``module:qualname:line``
strings, innermost first, leaving out this capture, the standard library, site-packages /
dist-packages and LIBRARY_MODULES (frameworks, drivers); comprehension frames fold into their
function. Later executions carry null for both, so only those first ones walk the stack.
Statement text longer than MAX_SQL_CHARS is cut. (``stack`` was added last: readers accept
records without it.)

psycopg_pool (perfagents_pgcapture, when the target imports it): every
``ConnectionPool.getconn`` / ``AsyncConnectionPool.getconn`` (what ``pool.connection()`` uses)
is timed into a separate file per process, ``<folder>/pool-<pid>-<ms>.jsonl``, same batch
format, records: ts, wait_ms, pool name, pool class, max_size, pid, thread, request_id, method,
path, route, ok (false when getconn raised, e.g. PoolTimeout).
"""

import atexit
import contextvars
import itertools
import json
import os
import sys
import threading
import time

ENV_VAR = "PERFAGENTS_SQL_LOG"
FLUSH_INTERVAL_S = 0.25
PARAMS_PER_SQL = 8  # executions per SQL text that keep their parameters and call stack
MAX_TRACKED_SQL = 10000
MAX_SQL_CHARS = 20000
MAX_STACK_FRAMES = 6  # own frames kept per stack, innermost first
MAX_STACK_WALK = 80  # frames looked at per stack, own or not
MAX_CODE_CACHE = 20000  # code objects whose verdict (own frame name, or skipped) is cached
# top-level packages whose frames are never the target's own code (also when not in site-packages)
LIBRARY_MODULES = frozenset({
    "perfagents_sqlcapture", "perfagents_pgcapture", "sitecustomize", "sqlite3", "psycopg", "psycopg2",
    "psycopg_pool", "asyncpg", "aiosqlite", "sqlalchemy", "databases", "starlette", "fastapi", "uvicorn",
    "gunicorn", "anyio", "sniffio", "asyncio", "uvloop", "h11", "httptools", "concurrent", "threading",
    "contextlib", "django", "flask", "werkzeug", "asgiref", "opentelemetry", "wrapt", "_pytest", "pluggy",
})
COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})

_perf = time.perf_counter
_now = time.time
_get_ident = threading.get_ident
_request = contextvars.ContextVar("perfagents_request", default=None)
_request_ids = itertools.count(1)
_param_counts = {}
_code_names = {}  # id(code) -> (code, "module:qualname" or None when skipped)
_warned = []
_getframe = sys._getframe
_HERE = os.path.dirname(os.path.abspath(__file__))
_STDLIB = tuple(sorted({os.path.dirname(os.__file__), os.path.realpath(os.path.dirname(os.__file__))}))
_THIRD_PARTY_DIRS = ("site-packages", "dist-packages")


def _warn(message):
    if not _warned:
        _warned.append(message)
        try:
            sys.stderr.write(f"perfagents sqlcapture: {message}\n")
        except Exception:
            pass


class _Log:
    """The per-process record buffer and its writer thread."""

    def __init__(self, folder):
        self.folder = folder
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

    def start(self):
        if self.started:
            return
        self.started = True
        thread = threading.Thread(target=self._run, name="perfagents-sqlcapture", daemon=True)
        thread.start()

    def after_fork(self):
        """In a forked child: own buffer and file; a writer thread if the parent had one."""
        was_started = self.started
        _param_counts.clear()
        _code_names.clear()
        self._reset()
        if was_started:
            self.start()

    def _run(self):
        while not self.stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush(final=False)
            except Exception as exc:  # keep draining the buffer whatever happens
                _warn(f"flush failed ({exc})")

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
            with open(path, "a", encoding="utf-8") as out:
                out.write(line)
        except (OSError, ValueError) as exc:
            self.failed = True
            _warn(f"cannot write {path} ({exc}); capture stopped")


def _request_fields(holder):
    """(request_id, method, path, route) of a request holder, all None outside a request."""
    if holder is None:
        return None, None, None, None
    request_id, method, path, scope = holder
    route = getattr(scope.get("route"), "path", None) if scope else None
    return request_id, method, path, route


def _row(rec, pid):
    ts, duration_ms, sql, thread, holder, params, rowcount, fetched, stack = rec
    request_id, method, path, route = _request_fields(holder)
    if not isinstance(sql, str):
        sql = _sql_text(sql)
    if len(sql) > MAX_SQL_CHARS:
        sql = sql[:MAX_SQL_CHARS]
    rows = rowcount if rowcount is not None and rowcount >= 0 else fetched
    if params is not None:
        params = _encode_params(params)
    return [ts, duration_ms, sql, pid, thread, request_id, method, path, route, rows, params, stack]


def _wait_row(rec, pid):
    ts, wait_ms, pool, pool_class, max_size, thread, holder, ok = rec
    request_id, method, path, route = _request_fields(holder)
    return [ts, wait_ms, pool, pool_class, max_size, pid, thread, request_id, method, path, route, ok]


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
    if value is None or isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    return str(value)


def _encode_params(params):
    if params is None:
        return None
    if isinstance(params, dict):
        return {str(k): _encode_value(v) for k, v in params.items()}
    try:
        return [_encode_value(v) for v in params]
    except TypeError:
        return None


_LOG = None


def _first_use(sql):
    """Whether this is one of the first PARAMS_PER_SQL executions of ``sql`` (a str; cheap)."""
    seen = _param_counts.get(sql, 0)
    if seen >= PARAMS_PER_SQL or (seen == 0 and len(_param_counts) >= MAX_TRACKED_SQL):
        return False
    _param_counts[sql] = seen + 1
    return True


def _frame_name(frame, code):
    """``module:qualname`` of a frame of the target's own code, None for any other frame."""
    if code.co_name in COMPREHENSIONS:
        return None  # folds into the function around it, the next frame out
    filename = code.co_filename
    if filename.startswith("<frozen") or filename.startswith(_HERE) or filename.startswith(_STDLIB):
        return None
    if any(part in filename for part in _THIRD_PARTY_DIRS):
        return None
    f_globals = frame.f_globals
    module = f_globals.get("__name__") or "?"
    if module == "__main__":  # ``python -m pkg.mod``: the module's real name
        spec = f_globals.get("__spec__")
        module = getattr(spec, "name", None) or module
    if module.partition(".")[0] in LIBRARY_MODULES:
        return None
    return module + ":" + (getattr(code, "co_qualname", None) or code.co_name)


def _own_stack():
    """The target's own frames calling this: ``module:qualname:line``, innermost first (capture frames skipped)."""
    frame = _getframe(2)
    out = []
    walked = 0
    while frame is not None and walked < MAX_STACK_WALK:
        code = frame.f_code
        cached = _code_names.get(id(code))
        if cached is not None and cached[0] is code:
            name = cached[1]
        else:
            name = _frame_name(frame, code)
            if len(_code_names) < MAX_CODE_CACHE:
                _code_names[id(code)] = (code, name)  # holding ``code`` keeps its id from being reused
        if name is not None:
            out.append(name + ":" + str(frame.f_lineno))
            if len(out) >= MAX_STACK_FRAMES:
                break
        frame = frame.f_back
        walked += 1
    return out


def _extras(sql, params):
    """(params, stack) for the first executions of ``sql``, (None, None) for the rest."""
    try:
        if not _first_use(sql):
            return None, None
    except TypeError:  # an unhashable statement object
        return None, None
    try:
        stack = _own_stack()
    except Exception:
        stack = None
    return (params or None), stack


class CursorMixin:
    """Times execute/executemany/executescript and the fetches that follow them."""

    def execute(self, sql, parameters=()):
        ts = _now()
        t0 = _perf()
        try:
            return super().execute(sql, parameters)
        finally:
            t1 = _perf()
            params, stack = _extras(sql, parameters)
            rec = [ts, (t1 - t0) * 1000.0, sql, _get_ident(), _request.get(), params, self.rowcount, None, stack]
            self._perfagents_rec = rec
            _LOG.records.append(rec)

    def executemany(self, sql, seq_of_parameters):
        ts = _now()
        t0 = _perf()
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            t1 = _perf()
            stack = _extras(sql, None)[1]
            rec = [ts, (t1 - t0) * 1000.0, sql, _get_ident(), _request.get(), None, self.rowcount, None, stack]
            self._perfagents_rec = rec
            _LOG.records.append(rec)

    def executescript(self, sql_script):
        ts = _now()
        t0 = _perf()
        try:
            return super().executescript(sql_script)
        finally:
            t1 = _perf()
            stack = _extras(sql_script, None)[1]
            rec = [ts, (t1 - t0) * 1000.0, sql_script, _get_ident(), _request.get(), None, None, None, stack]
            self._perfagents_rec = None
            _LOG.records.append(rec)

    def fetchone(self):
        t0 = _perf()
        row = super().fetchone()
        rec = getattr(self, "_perfagents_rec", None)
        if rec is not None:
            rec[1] += (_perf() - t0) * 1000.0
            if row is not None:
                rec[7] = (rec[7] or 0) + 1
        return row

    def fetchmany(self, *args, **kwargs):
        t0 = _perf()
        rows = super().fetchmany(*args, **kwargs)
        rec = getattr(self, "_perfagents_rec", None)
        if rec is not None:
            rec[1] += (_perf() - t0) * 1000.0
            rec[7] = (rec[7] or 0) + len(rows)
        return rows

    def fetchall(self):
        t0 = _perf()
        rows = super().fetchall()
        rec = getattr(self, "_perfagents_rec", None)
        if rec is not None:
            rec[1] += (_perf() - t0) * 1000.0
            rec[7] = (rec[7] or 0) + len(rows)
        return rows


class ConnectionMixin:
    """Routes the Connection.execute shortcuts through timed cursors."""

    def cursor(self, factory=None):
        cls = _cursor_class(factory)
        if cls is None:  # a factory that is not a class: left alone, not timed
            return super().cursor() if factory is None else super().cursor(factory)
        return super().cursor(cls)

    def execute(self, sql, parameters=()):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters):
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script):
        return self.cursor().executescript(sql_script)


_classes = {}


def _subclass(mixin, base):
    """A cached subclass of ``base`` with ``mixin`` first, or None when base is not a class."""
    if base is None or not isinstance(base, type):
        return None
    if issubclass(base, mixin):
        return base
    cls = _classes.get((mixin, base))
    if cls is None:
        cls = type("Captured" + base.__name__, (mixin, base), {})
        _classes[(mixin, base)] = cls
    return cls


_default_cursor = [None]


def _cursor_class(factory):
    if factory is None:
        return _default_cursor[0]
    return _subclass(CursorMixin, factory)


def _patch_sqlite3(module):
    dbapi2 = sys.modules.get("sqlite3.dbapi2", module)
    original = module.connect
    if getattr(original, "_perfagents", False):
        return
    _default_cursor[0] = _subclass(CursorMixin, module.Cursor)

    def connect(*args, **kwargs):
        if len(args) > 5:  # factory given positionally (Python < 3.13 signature)
            args = list(args)
            args[5] = _subclass(ConnectionMixin, args[5]) or args[5]
        else:
            factory = kwargs.get("factory") or module.Connection
            kwargs["factory"] = _subclass(ConnectionMixin, factory) or factory
        _LOG.start()
        return original(*args, **kwargs)

    connect._perfagents = True
    connect.__doc__ = original.__doc__
    module.connect = connect
    dbapi2.connect = connect


class RequestContext:
    """ASGI middleware: one ContextVar value per HTTP request, nothing else."""

    _perfagents = True

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        holder = (f"{_LOG.pid}-{next(_request_ids)}", scope.get("method"), scope.get("path"), scope)
        token = _request.set(holder)
        try:
            return await self.app(scope, receive, send)
        finally:
            _request.reset(token)


def _patch_uvicorn_config(module):
    config_cls = module.Config
    original = config_cls.load
    if getattr(original, "_perfagents", False):
        return

    def load(self):
        original(self)
        if not getattr(self.loaded_app, "_perfagents", False):
            self.loaded_app = RequestContext(self.loaded_app)

    load._perfagents = True
    config_cls.load = load


def _patch_uvicorn_server(module):
    """Flush when uvicorn has shut down: it then re-raises SIGTERM/SIGINT, so atexit never runs."""
    server_cls = module.Server
    original = server_cls.shutdown
    if getattr(original, "_perfagents", False):
        return

    async def shutdown(self, *args, **kwargs):
        try:
            return await original(self, *args, **kwargs)
        finally:
            _LOG.flush()

    shutdown._perfagents = True
    server_cls.shutdown = shutdown


def _patch_psycopg_cursor(module):
    import perfagents_pgcapture  # only once the target imports psycopg

    perfagents_pgcapture.patch_cursor_module(module)


def _patch_psycopg_cursor_async(module):
    import perfagents_pgcapture

    perfagents_pgcapture.patch_cursor_async_module(module)


def _patch_psycopg_pool(module):
    import perfagents_pgcapture

    perfagents_pgcapture.patch_pool_module(module)


def _patch_psycopg_pool_async(module):
    import perfagents_pgcapture

    perfagents_pgcapture.patch_pool_async_module(module)


_HOOKS = {
    "sqlite3": _patch_sqlite3,
    "psycopg.cursor": _patch_psycopg_cursor,
    "psycopg.cursor_async": _patch_psycopg_cursor_async,
    "psycopg_pool.pool": _patch_psycopg_pool,
    "psycopg_pool.pool_async": _patch_psycopg_pool_async,
    "uvicorn.config": _patch_uvicorn_config,
    "uvicorn.server": _patch_uvicorn_server,
}


class _HookedLoader:
    """Delegates to the real loader, then runs the post-import hook."""

    def __init__(self, loader, hook):
        self._loader = loader
        self._hook = hook

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            self._hook(module)
        except Exception as exc:  # never break the target's import
            _warn(f"could not patch {module.__name__} ({exc})")


class PostImportFinder:
    """A meta-path finder that answers only for the hooked module names (a dict lookup each)."""

    def find_spec(self, fullname, path=None, target=None):
        hook = _HOOKS.get(fullname)
        if hook is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _HookedLoader(spec.loader, hook)
                return spec
        return None


def install(folder):
    """Start capturing into ``folder``; patch modules already imported, hook the others."""
    global _LOG
    if _LOG is not None:
        return
    os.makedirs(folder, exist_ok=True)
    _LOG = _Log(folder)
    atexit.register(_LOG.flush)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_LOG.after_fork)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:  # spawned workers leave through os._exit, after these finalizers
        mp_util.Finalize(None, _LOG.flush, exitpriority=0)
    sys.meta_path.insert(0, PostImportFinder())
    for name, hook in _HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])


def install_from_env():
    folder = os.environ.get(ENV_VAR)
    if folder:
        try:
            install(folder)
        except Exception as exc:
            _warn(f"capture not installed ({exc})")
