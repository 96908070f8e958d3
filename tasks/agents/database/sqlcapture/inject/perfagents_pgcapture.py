"""Times psycopg 3 statements and psycopg_pool connection waits; loaded by perfagents_sqlcapture's hooks.

Standard library only and Python 3.8+ syntax, like perfagents_sqlcapture (which imports this
module only from its post-import hooks on ``psycopg.cursor`` / ``psycopg.cursor_async`` /
``psycopg_pool.pool`` / ``psycopg_pool.pool_async``, so a target that never imports them never
loads it, and psycopg is never imported on its behalf). Records go to the same CaptureLog
(perfagents_capturelog) as sqlite3's.

``Cursor.execute/executemany`` and ``AsyncCursor.execute/executemany`` are replaced on the
classes themselves, so every subclass that does not override them is covered too
(``ClientCursor``, ``RawCursor``, a user's ``cursor_factory``), and so are
``Connection.execute`` / ``AsyncConnection.execute``, which create a cursor and call its
``execute``. Server-side cursors (``ServerCursor``) override ``execute`` and are not timed.

A record is the same as for sqlite3: the SQL as the caller passed it (``%s`` / ``%(name)s``
placeholders; a ``psycopg.sql.Composed`` is rendered when the record is written), its duration
(the whole call: for the async cursor, across the ``await``, so it includes waiting for the
connection lock; psycopg has fetched the result when ``execute`` returns, so fetches are not
timed), the request in context, ``rowcount`` and, for the first executions of each SQL text,
the parameters and the caller's own stack. In pipeline mode ``execute`` returns before the
server answers, so those durations are only the time to queue the statement.

psycopg_pool (hooks on ``psycopg_pool.pool`` / ``psycopg_pool.pool_async``): ``getconn`` of
``ConnectionPool`` and ``AsyncConnectionPool`` (and of their subclasses, the null pools
included) is timed, one wait record per acquisition: how long the caller waited for a
connection, the pool's name, class and ``max_size``, the request in context, and whether it
got one. ``pool.connection()`` calls ``getconn``, so both ways are covered.
"""

import perfagents_sqlcapture as core

_perf = core._perf
_now = core._now
_get_ident = core._get_ident
_request = core._request


def _record(ts, seconds, query, params, cursor):
    """Append one statement record; parameters and stack for the first executions of a plain SQL text."""
    log = core._LOG
    if not log.started:
        log.start()
    if log.paused:
        return
    try:
        rowcount = cursor.rowcount
    except Exception:
        rowcount = None
    if isinstance(query, str):  # a Composed is not hashable: no parameters, no stack
        params, stack = core._extras(query, params)
    else:
        params = stack = None
    log.records.append([ts, seconds * 1000.0, query, _get_ident(), _request.get(), params, rowcount, None, stack])


def _timed_sync(original, many):
    if many:
        def executemany(self, query, params_seq, **kwargs):
            ts = _now()
            t0 = _perf()
            try:
                return original(self, query, params_seq, **kwargs)
            finally:
                _record(ts, _perf() - t0, query, None, self)

        wrapper = executemany
    else:
        def execute(self, query, params=None, **kwargs):
            ts = _now()
            t0 = _perf()
            try:
                return original(self, query, params, **kwargs)
            finally:
                _record(ts, _perf() - t0, query, params, self)

        wrapper = execute
    return wrapper


def _timed_async(original, many):
    if many:
        async def executemany(self, query, params_seq, **kwargs):
            ts = _now()
            t0 = _perf()
            try:
                return await original(self, query, params_seq, **kwargs)
            finally:
                _record(ts, _perf() - t0, query, None, self)

        wrapper = executemany
    else:
        async def execute(self, query, params=None, **kwargs):
            ts = _now()
            t0 = _perf()
            try:
                return await original(self, query, params, **kwargs)
            finally:
                _record(ts, _perf() - t0, query, params, self)

        wrapper = execute
    return wrapper


def _patch_class(cls, make_wrapper):
    for name, many in (("execute", False), ("executemany", True)):
        original = cls.__dict__.get(name)
        if original is None or getattr(original, "_perfagents", False):
            continue
        wrapper = make_wrapper(original, many)
        wrapper._perfagents = True
        wrapper.__doc__ = original.__doc__
        wrapper.__wrapped__ = original
        setattr(cls, name, wrapper)


def patch_cursor_module(module):
    """Post-import hook for ``psycopg.cursor``: time ``Cursor``."""
    _patch_class(module.Cursor, _timed_sync)


def patch_cursor_async_module(module):
    """Post-import hook for ``psycopg.cursor_async``: time ``AsyncCursor``."""
    _patch_class(module.AsyncCursor, _timed_async)


def _record_wait(ts, seconds, pool, ok):
    try:
        max_size = pool.max_size
    except Exception:
        max_size = None
    log = core._LOG
    if not log.started:
        log.start()
    if log.paused:
        return
    log.waits.append([ts, seconds * 1000.0, getattr(pool, "name", None), type(pool).__name__, max_size,
                      _get_ident(), _request.get(), ok])


def _timed_getconn_sync(original):
    def getconn(self, *args, **kwargs):
        ts = _now()
        t0 = _perf()
        ok = False
        try:
            conn = original(self, *args, **kwargs)
            ok = True
            return conn
        finally:
            _record_wait(ts, _perf() - t0, self, ok)

    return getconn


def _timed_getconn_async(original):
    async def getconn(self, *args, **kwargs):
        ts = _now()
        t0 = _perf()
        ok = False
        try:
            conn = await original(self, *args, **kwargs)
            ok = True
            return conn
        finally:
            _record_wait(ts, _perf() - t0, self, ok)

    return getconn


def _patch_getconn(cls, make_wrapper):
    original = cls.__dict__.get("getconn")
    if original is None or getattr(original, "_perfagents", False):
        return
    wrapper = make_wrapper(original)
    wrapper._perfagents = True
    wrapper.__doc__ = original.__doc__
    wrapper.__wrapped__ = original
    cls.getconn = wrapper


def patch_pool_module(module):
    """Post-import hook for ``psycopg_pool.pool``: time ``ConnectionPool.getconn``."""
    _patch_getconn(module.ConnectionPool, _timed_getconn_sync)


def patch_pool_async_module(module):
    """Post-import hook for ``psycopg_pool.pool_async``: time ``AsyncConnectionPool.getconn``."""
    _patch_getconn(module.AsyncConnectionPool, _timed_getconn_async)
