"""Create (and drop, to revert) an index. SQLite here; identifiers quoted by psycopg.sql."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tasks.changes.runtime import Runtime
from tasks.db.ident import create_index_sql, drop_index_sql
from tasks.db.url import SQLITE_PREFIX, sqlite_path, url_scheme
from tasks.errors import RefusedError, SpecError

BUSY_TIMEOUT_S = 30.0


def sqlite_file(url: str) -> Path:
    path = sqlite_path(url)
    if path is None:
        raise RefusedError(f"index changes support sqlite:/// databases here, not {url_scheme(url)}")
    return path.resolve()


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise SpecError(f"database file {path} does not exist")
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _check_columns(con: sqlite3.Connection, table: str, columns: list[str]) -> None:
    have = {row[0] for row in con.execute("SELECT name FROM pragma_table_info(?)", [table]).fetchall()}
    if not have:
        raise RefusedError(f"table {table!r} does not exist")
    missing = [c for c in columns if c not in have]
    if missing:
        raise RefusedError(f"table {table!r} has no column {missing[0]!r}")


def apply_create_index(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    if rt.spec.database is None or not rt.spec.database.allow_ddl:
        raise RefusedError("the spec does not allow DDL (database.allow_ddl is false)")
    if rt.database_url is None:
        raise RefusedError("the target has no database")
    path = sqlite_file(rt.database_url)
    table, columns, name = params["table"], list(params["columns"]), params["name"]
    con = _connect(path)
    try:
        _check_columns(con, table, columns)
        exists = con.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", [name]).fetchall()
        if exists:
            raise RefusedError(f"index {name!r} already exists")
        con.execute(create_index_sql(name, table, columns))
    finally:
        con.close()
    return {"database_url": f"{SQLITE_PREFIX}{path}", "index": name}


def provisional_create_index(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """The undo journaled before the index is built: the database (its absolute path: `revert`
    may run from another folder) and the index's name. An index of that name that exists already
    (one an earlier run kept) is not this change's to drop: apply refuses it, and a crash before
    that must not make `revert` drop it."""
    url = rt.database_url or ""
    undo: dict[str, Any] = {"database_url": url, "index": params["name"],
                            **({"schema": params["schema"]} if "schema" in params else {})}
    if sqlite_path(url) is None:
        return undo
    path = sqlite_file(url)
    undo["database_url"] = f"{SQLITE_PREFIX}{path}"
    if path.is_file():
        con = _connect(path)
        try:
            if con.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", [params["name"]]).fetchall():
                undo["existed"] = True
        finally:
            con.close()
    return undo


def revert_create_index(rt: Runtime | None, undo: dict[str, Any]) -> str:
    if undo.get("existed"):
        return f"index {undo['index']} existed before the change; left in place"
    path = sqlite_file(undo["database_url"])
    if not path.is_file():
        return f"database {path} is gone; nothing to drop"
    con = _connect(path)
    try:
        con.execute(drop_index_sql(undo["index"]))
    finally:
        con.close()
    return f"dropped index {undo['index']}"
