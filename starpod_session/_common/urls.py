"""Database URLs as people may see them: every password hidden, wherever the URL carries it.

A password can sit in the userinfo (``user:secret@host``) or in the query string
(``?password=secret``, ``passwd``, ``sslpassword``, ...), and a driver may echo
either in its own error text. Everything this library shows (errors, ``repr``,
logs, the command line) goes through :func:`redact_url` or :func:`redact_text`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy.engine import URL, make_url

__all__ = ["HIDDEN", "PASSWORD_QUERY_KEYS", "redact_text", "redact_url", "url_secrets"]

#: What a password is replaced with.
HIDDEN = "***"

#: Query-string keys whose value is a secret, as drivers spell them (compared case-insensitively).
PASSWORD_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "pass", "sslpassword", "ssl_password", "secret"})

# A URL in free text: userinfo password (``scheme://user:PASSWORD@``) ...
_USERINFO_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/?#@\s]*:)(?P<secret>[^@\s]*)(?P<tail>@)")
# ... and a password-like key of a query string or a libpq conninfo (``password=...``).
_KEYED_PASSWORD = re.compile(
    r"(?P<head>(?<![\w])(?:" + "|".join(sorted(PASSWORD_QUERY_KEYS)) + r")\s*=\s*)(?P<secret>'[^']*'|[^&\s'\"]+)",
    re.IGNORECASE,
)


def url_secrets(url: URL) -> list[str]:
    """The password values ``url`` carries (userinfo and query), longest first."""
    found: list[str] = []
    if url.password:
        found.append(str(url.password))
    for key, value in url.query.items():
        if key.lower() in PASSWORD_QUERY_KEYS:
            values = (value,) if isinstance(value, str) else tuple(value)
            found.extend(v for v in values if v)
    return sorted(set(found), key=len, reverse=True)


def redact_url(target: URL | str) -> str:
    """``target`` rendered with every password shown as ``***`` (a string that is not a URL: as text)."""
    if isinstance(target, str):
        try:
            target = make_url(target)
        except Exception:  # not parseable: hide what looks like a password in the raw text
            return redact_text(str(target))
    query = {key: (HIDDEN if key.lower() in PASSWORD_QUERY_KEYS else value) for key, value in target.query.items()}
    # SQLAlchemy percent-encodes query values; the marker, and the ``host:port`` and comma
    # lists of libpq's multi-host forms (``?host=h1:5432&host=h2:5432``), read better as they are.
    shown = target.set(query=query).render_as_string(hide_password=True)
    head, mark, tail = shown.partition("?")
    return head + mark + tail.replace("%2A", "*").replace("%3A", ":").replace("%2C", ",")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` and anything shaped like a password in a URL replaced by ``***``.

    For messages built from driver errors, which may quote the connection string.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    text = _USERINFO_PASSWORD.sub(lambda m: m["head"] + HIDDEN + m["tail"], text)
    return _KEYED_PASSWORD.sub(lambda m: m["head"] + HIDDEN, text)
