"""Database URLs, in one place: which database a URL names, its SQLite file, and the check every
user-given URL passes (``sqlite:///path`` or ``postgresql://[user[:pw]@]host[:port]/db`` on loopback).

Passwords in URLs are handled by tasks.db.redact.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tasks.db.redact import redact_url
from tasks.errors import SpecError, UnsafeTargetError

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
DATABASE_SCHEMES = ("sqlite", *POSTGRES_SCHEMES)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def url_scheme(url: str) -> str:
    """``postgresql://u@h/db`` -> ``postgresql`` (no parsing: works on any string)."""
    return url.split(":", 1)[0]


def is_postgres_url(url: str | None) -> bool:
    return url is not None and url_scheme(url) in POSTGRES_SCHEMES


def sqlite_path(url: str | None) -> Path | None:
    """``sqlite:///rel.db`` -> rel.db, ``sqlite:////abs/x.db`` -> /abs/x.db (query dropped; a
    SQLAlchemy driver such as ``sqlite+aiosqlite:///`` too); None for any other URL or an
    in-memory database."""
    if not url or url_scheme(url).split("+", 1)[0] != "sqlite" or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_database_url(url: str, *, allow_remote: bool = False) -> None:
    """A URL the toolkit accepts: sqlite:///path or postgresql://[user[:pw]@]host[:port]/db on loopback."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 address
        raise SpecError(f"bad database URL {redact_url(url)!r}: {exc}") from exc
    if parts.scheme == "sqlite":
        if not url.startswith(SQLITE_PREFIX) or len(url) <= len(SQLITE_PREFIX):
            raise SpecError(f"bad database URL {redact_url(url)!r}: expected sqlite:///path")
        return
    if parts.scheme not in POSTGRES_SCHEMES:
        raise SpecError(f"bad database URL {redact_url(url)!r}: expected sqlite:/// or postgresql://")
    try:
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise SpecError(f"bad database URL {redact_url(url)!r}: {exc}") from exc
    if not parts.hostname or not parts.path.strip("/"):
        raise SpecError(f"bad database URL {redact_url(url)!r}: expected postgresql://user@host:port/dbname")
    if any(c in url for c in "\r\n\t\x00"):
        raise SpecError(f"bad database URL {redact_url(url)!r}: a control character in it")
    # libpq also connects to hosts named in the query string (host=, hostaddr=)
    hosts = [parts.hostname] + [h for k, v in parse_qsl(parts.query) if k in ("host", "hostaddr") for h in v.split(",")]
    service = [k for k, _ in parse_qsl(parts.query) if k in ("service", "servicefile")]
    if service and not allow_remote:  # a pg_service.conf entry names its own host
        raise UnsafeTargetError(f"database URL names a libpq {service[0]}= whose host is not checked; "
                                "name the host in the URL, or pass --allow-remote")
    for host in hosts if not allow_remote else []:
        if not is_loopback_host(host) and not host.startswith("/"):  # /: a local socket
            raise UnsafeTargetError(f"database host {host!r} is not loopback; pass --allow-remote")


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.1``, ``::1`` or any other loopback address."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
