"""Times psycopg2 and asyncpg statements; loaded by perfagents_sqlcapture's hooks on ``psycopg2`` /
``asyncpg.connection`` only, so a target that never imports them never loads this module.

Standard library only and Python 3.8+ syntax. Records are the same as psycopg 3's
(perfagents_pgcapture), in the same CaptureLog.

- psycopg2: its cursor is a C type, so ``psycopg2.connect`` is wrapped to pass a
  ``connection_factory`` subclass (of the caller's, when one is given) whose ``cursor()`` hands
  out a timed subclass of whatever cursor factory applies (the call's, the connection's, or
  psycopg2's own): ``execute`` and ``executemany`` are timed, ``callproc`` is not. SQLAlchemy's
  psycopg2 dialect connects through ``psycopg2.connect``, so it is covered.
- asyncpg: ``Connection.execute/executemany/fetch/fetchrow/fetchval`` are replaced on the class
  (pools call them), and so are ``PreparedStatement.fetch/fetchrow/fetchval/executemany``
  (SQLAlchemy's asyncpg dialect prepares every statement); each record times the whole
  ``await`` (of the execution: preparing is not timed) and ``fetch`` records its row count.
  Cursors (``Connection.cursor``, server-side iteration) are not timed.
"""

import perfagents_pgcapture as pg
import perfagents_sqlcapture as core

_classes = {}  # type: dict


def _subclass(mixin, base):
    key = (mixin, base)
    cls = _classes.get(key)
    if cls is None:
        cls = _classes[key] = type("Captured" + base.__name__, (mixin, base), {"_perfagents": True})
    return cls


class _CursorMixin:
    def execute(self, query, vars=None):
        ts = core._now()
        t0 = core._perf()
        try:
            return super().execute(query, vars)
        finally:
            pg._record(ts, core._perf() - t0, query, vars, self)

    def executemany(self, query, vars_list):
        ts = core._now()
        t0 = core._perf()
        try:
            return super().executemany(query, vars_list)
        finally:
            pg._record(ts, core._perf() - t0, query, None, self)


def _psycopg2_connection(base, default_cursor):
    class _ConnectionMixin:
        def cursor(self, *args, **kwargs):
            factory = kwargs.get("cursor_factory") or self.cursor_factory or default_cursor
            if isinstance(factory, type) and not getattr(factory, "_perfagents", False):
                kwargs["cursor_factory"] = _subclass(_CursorMixin, factory)
            return super().cursor(*args, **kwargs)

    return _subclass(_ConnectionMixin, base)


def patch_psycopg2(module):
    original = getattr(module, "connect", None)
    if original is None or getattr(original, "_perfagents", False):
        return
    extensions = __import__("psycopg2.extensions", fromlist=["connection"])

    def connect(*args, **kwargs):
        base = kwargs.get("connection_factory") or extensions.connection
        if isinstance(base, type):
            kwargs["connection_factory"] = _psycopg2_connection(base, extensions.cursor)
        return original(*args, **kwargs)

    connect._perfagents = True
    connect.__doc__ = original.__doc__
    module.connect = connect


class _Rows:
    """Stands in for a cursor in pg._record: asyncpg methods return rows or a status string."""

    def __init__(self, result):
        self.rowcount = len(result) if isinstance(result, list) else (1 if result is not None else None)


def _timed_asyncpg(original, with_params):
    async def method(self, query, *args, **kwargs):
        ts = core._now()
        t0 = core._perf()
        result = None
        try:
            result = await original(self, query, *args, **kwargs)
            return result
        finally:
            params = list(args) if with_params and args else None
            pg._record(ts, core._perf() - t0, query, params, _Rows(result if with_params else None))

    return method


def _replace(cls, methods, make_wrapper):
    """Replace each ``(name, with_params)`` method defined on ``cls`` by ``make_wrapper(original, with_params)``, once."""
    for name, with_params in methods:
        original = cls.__dict__.get(name)
        if original is None or getattr(original, "_perfagents", False):
            continue
        wrapper = make_wrapper(original, with_params)
        wrapper._perfagents = True
        wrapper.__doc__ = original.__doc__
        wrapper.__wrapped__ = original
        setattr(cls, name, wrapper)


def patch_asyncpg_connection(module):
    _replace(module.Connection, (("execute", True), ("executemany", False), ("fetch", True), ("fetchrow", True),
                                 ("fetchval", True)), _timed_asyncpg)


def _timed_prepared(original, with_params):
    async def method(self, *args, **kwargs):
        ts = core._now()
        t0 = core._perf()
        result = None
        try:
            result = await original(self, *args, **kwargs)
            return result
        finally:
            params = list(args) if with_params and args else None
            pg._record(ts, core._perf() - t0, self.get_query(), params, _Rows(result if with_params else None))

    return method


def patch_asyncpg_prepared(module):
    _replace(module.PreparedStatement, (("fetch", True), ("fetchrow", True), ("fetchval", True), ("executemany", False)),
             _timed_prepared)
