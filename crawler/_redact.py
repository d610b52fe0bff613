"""Keeping credentials out of everything that can be printed.

A setting is treated as secret by its name alone (``password``, ``api_key``,
``access_token``...), never by its value: the value may come from an
environment variable and look like anything. Secret values are shown as
``[secure]`` in ``crawl settings``, in reprs and in error messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "is_secret_key",
    "redact_mapping",
    "redact_url",
    "redact_userinfo",
    "scrub",
]

REDACTED = "[secure]"

# Anywhere in a key: these never name anything but a credential.
_SECRET_PART = re.compile(
    r"passw|passphrase|secret|token|cookie|credential|apikey|authoriz|private_?key|session_?id",
    re.IGNORECASE,
)
# Only as a whole word of the key, so that ``author`` or ``keepalive`` stay visible.
_SECRET_WORDS = frozenset({"key", "auth", "pass", "pwd", "pin", "sid"})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])")


def is_secret_key(key: str) -> bool:
    """Whether a setting or field named ``key`` holds a credential."""
    if _SECRET_PART.search(key):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORD_SPLIT.split(key))


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with the values of secret keys replaced (nested tables too)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if is_secret_key(str(key)) and value not in (None, ""):
            out[key] = REDACTED
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        else:
            out[key] = redact_userinfo(value)
    return out


# scheme://user:password@ : credentials in a URL (a proxy's), whatever the key.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def redact_userinfo(value: Any) -> Any:
    """``value`` with the ``user:password@`` of any URL in it shown as ``***@``
    (strings, and strings in lists and tables); the rest is kept, so
    ``proxy = "http://***@proxy:3128"`` still says which proxy."""
    if isinstance(value, str):
        return _USERINFO.sub(r"\g<scheme>***@", value) if "@" in value else value
    if isinstance(value, Mapping):
        return {key: redact_userinfo(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_userinfo(item) for item in value)
    return value


def redact_url(url: str) -> str:
    """The URL without user info or query: either may carry credentials (a GET form)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of the given secret values replaced."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, REDACTED)
    return text
