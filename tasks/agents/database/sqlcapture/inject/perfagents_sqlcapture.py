"""Installs the SQL statement capture in a target process and times its sqlite3 statements.

Loaded by the sitecustomize next to it, only when PERFAGENTS_SQL_LOG names a folder.
Standard library only and Python 3.8+ syntax: this runs inside the target's own interpreter,
which may be another virtualenv or another Python version than the toolkit's. Importing this
module does nothing and needs nothing beside it; ``install`` loads the capture's other parts:
perfagents_capturelog (the record buffer and its writer thread: files and record format are
described there), perfagents_callstack (the call stack of the target's own code) and
perfagents_requestctx (which request a statement belongs to).

``install``:
- hooks the target's imports (a meta-path finder answering only for the module names in
  _HOOKS) and patches those already imported;
- ``sqlite3.connect`` (and ``sqlite3.dbapi2.connect``) create connections of a Connection
  subclass (a subclass of the caller's ``factory`` when one is given) whose
  execute/executemany/executescript, and whose cursors' execute/executemany/fetch*, are timed
  with ``time.perf_counter``. ``Connection.execute`` is covered too: CPython's C shortcut
  bypasses Python-level cursor hooks, which is why OpenTelemetry's instrumentation misses it.
- psycopg 3 cursors and psycopg_pool ``getconn``: perfagents_pgcapture, loaded only when the
  target imports ``psycopg.cursor`` / ``psycopg.cursor_async`` / ``psycopg_pool``; psycopg2 and
  asyncpg: perfagents_pgdrivers, loaded only when the target imports ``psycopg2`` / ``asyncpg``.
- the request each statement belongs to: perfagents_requestctx sets a ContextVar per HTTP
  request under uvicorn, gunicorn, waitress, werkzeug, Flask and Django (id, method, path, the
  ASGI scope whose Starlette route gives the path template, and the Locust name the load
  generator sent) and carries it into thread pools. Uvicorn's
  ``Server.shutdown`` flushes the buffer (uvicorn re-raises SIGTERM after it, skipping atexit);
  so do atexit and multiprocessing's finalizers. A forked child (gunicorn workers) gets its
  own buffer, file and thread, and counts first executions afresh.

Each statement becomes one record on the hot path. The first PARAMS_PER_SQL executions of
each SQL text (at most MAX_TRACKED_SQL texts) keep the parameters (for EXPLAIN and what-if
timing) and the call stack; later executions carry null for both, so only those first ones
walk the stack.
"""

import atexit
import contextvars
import os
import sys
import threading
import time

ENV_VAR = "PERFAGENTS_SQL_LOG"
PARAMS_PER_SQL = 8  # executions per SQL text that keep their parameters and call stack
MAX_TRACKED_SQL = 10000

_perf = time.perf_counter
_now = time.time
_get_ident = threading.get_ident
_request = contextvars.ContextVar("perfagents_request", default=None)  # install() takes perfagents_requestctx's
_param_counts = {}  # type: dict
_warned = []  # type: list
_LOG = None  # the CaptureLog (perfagents_capturelog), set by install()
_collect_stack = None  # perfagents_callstack.collect_stack, bound by install()


def _warn(message):
    if not _warned:
        _warned.append(message)
        try:
            sys.stderr.write(f"perfagents sqlcapture: {message}\n")
        except Exception:
            pass


def _first_use(sql):
    """Whether this is one of the first PARAMS_PER_SQL executions of ``sql`` (a str; cheap)."""
    seen = _param_counts.get(sql, 0)
    if seen >= PARAMS_PER_SQL or (seen == 0 and len(_param_counts) >= MAX_TRACKED_SQL):
        return False
    _param_counts[sql] = seen + 1
    return True


def _extras(sql, params):
    """(params, stack) for the first executions of ``sql``, (None, None) for the rest."""
    try:
        if not _first_use(sql):
            return None, None
    except TypeError:  # an unhashable statement object
        return None, None
    try:
        stack = _collect_stack()
    except Exception:
        stack = None
    return (params or None), stack


class CursorMixin:
    """Times execute/executemany/executescript and the fetches that follow them."""

    def execute(self, sql, parameters=()):
        if _LOG.paused:
            self._perfagents_rec = None
            return super().execute(sql, parameters)
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
        if _LOG.paused:
            self._perfagents_rec = None
            return super().executemany(sql, seq_of_parameters)
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
        if _LOG.paused:
            self._perfagents_rec = None
            return super().executescript(sql_script)
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


_classes = {}  # type: dict


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
    """The timed cursor class for ``factory``: the timing sits just above sqlite3.Cursor, below the
    factory's own methods, so a wrapper that rewrites the SQL (Django's ``%s`` -> ``?``) is
    recorded with the SQL sqlite3 ran; None for a factory that is not a class."""
    timed = _default_cursor[0]
    if factory is None or timed is None or factory is timed.__mro__[2]:  # sqlite3.Cursor itself
        return timed
    if not isinstance(factory, type) or issubclass(factory, CursorMixin):
        return factory if isinstance(factory, type) else None
    cls = _classes.get((timed, factory))
    if cls is None:
        try:
            cls = type("Captured" + factory.__name__, (factory, timed), {})
        except TypeError:  # not a sqlite3.Cursor subclass: time it from the outside
            cls = _subclass(CursorMixin, factory)
        _classes[(timed, factory)] = cls
    return cls


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
    "uvicorn.server": _patch_uvicorn_server,
    "psycopg2": lambda module: __import__("perfagents_pgdrivers").patch_psycopg2(module),
    "asyncpg.connection": lambda module: __import__("perfagents_pgdrivers").patch_asyncpg_connection(module),
    "asyncpg.prepared_stmt": lambda module: __import__("perfagents_pgdrivers").patch_asyncpg_prepared(module),
}  # install() adds perfagents_requestctx.HOOKS (the request context for ASGI and WSGI servers)


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


def _after_fork():
    """In a forked child: first executions counted afresh; own buffer, file and writer thread."""
    import perfagents_callstack  # loaded by install(): a sys.modules lookup

    _param_counts.clear()
    perfagents_callstack.clear_cache()
    _LOG.after_fork()


def install(folder):
    """Start capturing into ``folder``; patch modules already imported, hook the others."""
    global _LOG, _collect_stack, _request
    if _LOG is not None:
        return
    import perfagents_callstack
    import perfagents_capturelog
    import perfagents_requestctx

    _request = perfagents_requestctx.request
    _HOOKS.update(perfagents_requestctx.HOOKS)

    os.makedirs(folder, exist_ok=True)
    _collect_stack = perfagents_callstack.collect_stack
    _LOG = perfagents_capturelog.CaptureLog(folder, _warn)
    atexit.register(_LOG.flush)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork)
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
