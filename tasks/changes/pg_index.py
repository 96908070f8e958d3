"""Create (and drop, to revert) an index on PostgreSQL, without blocking the target's writes.

apply: check the table and columns exist (information_schema, bound parameters), then
``SET lock_timeout`` and ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` on an autocommit
connection (CONCURRENTLY cannot run in a transaction). A failed concurrent build leaves an
INVALID index behind: it is dropped before the error is raised. revert:
``DROP INDEX CONCURRENTLY IF EXISTS``. Identifiers are composed with psycopg.sql.

Passwords: the undo stores the database URL *without* its password. Revert reconnects with
the live runtime's URL when it names the same database, else with the stored URL, and libpq
then takes the password from ``PGPASSWORD`` or ``~/.pgpass`` (a spec's ``${ENV}`` password
should therefore also be exported as PGPASSWORD for ``perfagents revert`` after a crash).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from tasks.changes.runtime import Runtime
from tasks.db.postgres import connect, describe_error
from tasks.db.redact import strip_password
from tasks.errors import PerfagentsError, RefusedError, TransientError

LOCK_TIMEOUT = "5s"  # the build gives up rather than queue behind the target's transactions
DROP_LOCK_TIMEOUT = "30s"  # DROP ... CONCURRENTLY blocks nobody, so it may wait longer
NAME_MAX = 63  # PostgreSQL's identifier length (NAMEDATALEN - 1)
NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")  # index names the agents generate (quoted all the same)
DEFAULT_SCHEMA = "public"
_RETRYABLE = (pg_errors.LockNotAvailable, pg_errors.QueryCanceled, pg_errors.DeadlockDetected, psycopg.OperationalError)


def _connect(url: str) -> psycopg.Connection:
    try:
        return connect(url)
    except psycopg.Error as exc:
        raise TransientError(f"cannot connect to {strip_password(url)}: {describe_error(exc, url)}") from exc


def _lock_timeout(con: psycopg.Connection, value: str) -> None:
    con.execute("SELECT set_config('lock_timeout', %s, false)", [value])


def _check_params(params: dict[str, Any]) -> tuple[str, str, list[str], str]:
    table, columns, name = params.get("table"), params.get("columns"), params.get("name")
    schema = params.get("schema", DEFAULT_SCHEMA)
    if not all(isinstance(v, str) and v for v in (table, name, schema)):
        raise RefusedError("create_index needs string 'table', 'name' (and 'schema') parameters")
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        raise RefusedError("create_index needs a non-empty list of column names")
    if len(name) > NAME_MAX or not NAME_PATTERN.fullmatch(name):  # type: ignore[arg-type]
        raise RefusedError(f"index name {name!r} must be [a-z0-9_], at most {NAME_MAX} characters")
    return schema, table, columns, name  # type: ignore[return-value]


def _check_columns(con: psycopg.Connection, schema: str, table: str, columns: list[str]) -> None:
    have = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        [schema, table]).fetchall()}
    if not have:
        raise RefusedError(f"table {table!r} does not exist in schema {schema!r}")
    missing = [c for c in columns if c not in have]
    if missing:
        raise RefusedError(f"table {table!r} has no column {missing[0]!r}")


def _index_state(con: psycopg.Connection, schema: str, name: str) -> bool | None:
    """True: a valid index of that name exists; False: an invalid one; None: none."""
    row = con.execute(
        "SELECT i.indisvalid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_index i ON i.indexrelid = c.oid WHERE n.nspname = %s AND c.relname = %s", [schema, name]).fetchone()
    return None if row is None else bool(row[0])


def _drop(con: psycopg.Connection, schema: str, name: str) -> None:
    _lock_timeout(con, DROP_LOCK_TIMEOUT)
    con.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)))


def apply_create_index(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    if rt.spec.database is None or not rt.spec.database.allow_ddl:
        raise RefusedError("the spec does not allow DDL (database.allow_ddl is false)")
    if rt.database_url is None:
        raise RefusedError("the target has no database")
    url = rt.database_url
    schema, table, columns, name = _check_params(params)
    con = _connect(url)
    try:
        with con:
            _check_columns(con, schema, table, columns)
            state = _index_state(con, schema, name)
            if state is True:
                raise RefusedError(f"index {name!r} already exists")
            if state is False:
                _drop(con, schema, name)  # an earlier build's invalid leftover
            _lock_timeout(con, LOCK_TIMEOUT)
            create = sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(name), sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns)))
            try:
                con.execute(create)
            except psycopg.Error as exc:
                clean = _drop_leftover(con, schema, name)
                # RefusedError tells the journal nothing is left to undo; otherwise it reverts
                error = RefusedError if clean and not isinstance(exc, _RETRYABLE) else TransientError
                raise error(f"CREATE INDEX CONCURRENTLY {name} failed: {describe_error(exc, url)}") from exc
    except psycopg.Error as exc:
        raise TransientError(f"index change on {strip_password(url)} failed: {describe_error(exc, url)}") from exc
    return {"database_url": strip_password(url), "index": name, "schema": schema}


def provisional_create_index(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """The undo journaled before the index is built: the database (without its password) and the
    index. A valid index of that name that exists already (one an earlier run kept) is marked, so
    a crash before apply refuses it does not make `revert` drop it."""
    undo: dict[str, Any] = {"database_url": strip_password(rt.database_url or ""), "index": params["name"],
                            **({"schema": params["schema"]} if "schema" in params else {})}
    if rt.database_url:
        try:
            con = _connect(rt.database_url)
            try:
                if _index_state(con, str(params.get("schema", DEFAULT_SCHEMA)), str(params["name"])) is True:
                    undo["existed"] = True
            finally:
                con.close()
        except (psycopg.Error, PerfagentsError):
            pass  # apply will meet the same error and say so; nothing is built
    return undo


def _drop_leftover(con: psycopg.Connection, schema: str, name: str) -> bool:
    """Drop the INVALID index a failed concurrent build leaves; whether nothing is left."""
    try:
        if _index_state(con, schema, name) is False:
            _drop(con, schema, name)
        return _index_state(con, schema, name) is None
    except psycopg.Error:
        return False  # revert_create_index drops it later, from the journal's undo


def revert_create_index(rt: Runtime | None, undo: dict[str, Any]) -> str:
    if undo.get("existed"):
        return f"index {undo['index']} existed before the change; left in place"
    stored = undo["database_url"]
    url = rt.database_url if rt is not None and rt.database_url and strip_password(rt.database_url) == stored else stored
    schema, name = undo.get("schema", DEFAULT_SCHEMA), undo["index"]
    con = _connect(url)
    try:
        with con:
            _drop(con, schema, name)
    except psycopg.Error as exc:
        raise TransientError(f"DROP INDEX CONCURRENTLY {name} failed: {describe_error(exc, url)}") from exc
    return f"dropped index {name}"
