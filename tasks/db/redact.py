"""Passwords kept out of sight, in one place: every URL or text that reaches a log, an error, a
report, an observation, a finding, the journal or the store goes through one of these.

``redact_url`` / ``redact``  for display and storage: ``postgresql://u:secret@h`` -> ``postgresql://u:***@h``
                             in any text or nested structure (the spec stored with a run).
``strip_password``           a still working URL without its password (the journal's undo, findings):
                             libpq fills it in again from ``PGPASSWORD`` or ``~/.pgpass`` (or a
                             trust/peer rule on the server) when it reconnects.
``scrub``                    a known URL's password (plain and URL-encoded) out of a driver's message.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

REDACTED = "***"
# userinfo passwords (any scheme, any case; a password may hold '@': the last '@' before the host
# ends it) and password= parameters of URLs and libpq keyword strings
_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^\s/]*@(?=[^@\s/]*(?:[/?\s]|$))")
_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^&\s;]+)")
SECRET_KEY = re.compile(r"(?i)(passw|secret|token|api[_-]?key|credential|private[_-]?key)")


def redact_url(text: str) -> str:
    """Hide passwords in ``text``: ``postgresql://u:secret@h`` -> ``postgresql://u:***@h``,
    ``...?password=secret`` and ``password=secret`` (libpq keywords) -> ``password=***``."""
    return _PARAM.sub(rf"\1{REDACTED}", _PASSWORD.sub(rf"\1{REDACTED}@", text))


def redact(value: Any) -> Any:
    """Redact passwords in every string of a nested structure (for logs, the store, reports); the
    value of a key that names a secret (``PGPASSWORD``, ``API_TOKEN`` ...) is hidden whole."""
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and SECRET_KEY.search(k) and isinstance(v, str) else redact(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def url_password(url: str) -> str | None:
    """The password in ``url`` (userinfo or ``password=`` parameter), decoded; None when absent."""
    parts = urlsplit(url)
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        return unquote(userinfo.split(":", 1)[1])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            return value
    return None


def strip_password(url: str) -> str:
    """``postgresql://app:s3cret@h:5432/db?password=x&sslmode=require`` -> ``postgresql://app@h:5432/db?sslmode=require``."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.split(':', 1)[0]}@{hosts}" if at else hosts
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub(text: str, url: str | None) -> str:
    """``text`` with the URL's password (plain and URL-encoded) replaced by ``***``."""
    secret = url_password(url) if url else None
    if secret:
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            text = text.replace(form, REDACTED)
    return text
