"""Why a request failed, in the few words a person needs to act on it.

The HTTP layer's errors name the URL and wrap what the operating system said
(trio reports a refused connection as "all attempts to connect to host:port
failed", with the refusal itself two causes down, inside an exception
group). A crawl that could not start must say "connection refused to
127.0.0.1:1", so this digs the first operating-system error out of the chain.
It runs once per failed request, never on the hot path.
"""

from __future__ import annotations

import errno
import socket
import ssl
from http import HTTPStatus

from ..http import ConnectError, HTTPError

__all__ = ["describe_failure", "describe_status", "short_cause"]

_MAX_DEPTH = 16  # causes and groups looked through; real chains are 3 deep


def describe_failure(error: BaseException) -> str:
    """What went wrong: the OS error under a ConnectError, else the error's message
    (with its type, when it is not one of the HTTP layer's errors)."""
    if isinstance(error, ConnectError):
        os_error = _root_os_error(error)
        # The HTTP layer already words TLS failures well (certificate problems...).
        if os_error is not None and not isinstance(os_error, ssl.SSLError):
            return _describe_os_error(os_error, *_host_and_port(error))
    text = str(error)
    if isinstance(error, HTTPError):
        return text or type(error).__name__
    # Not from the HTTP layer (a bug, a mock): its type is part of the story.
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _root_os_error(error: BaseException) -> OSError | None:
    """The innermost OSError with an errno among ``error``'s causes (groups included;
    of several connection attempts, the last one)."""
    found: OSError | None = None
    pending: list[tuple[BaseException, int]] = [(error, 0)]
    while pending:
        exc, depth = pending.pop()
        if depth > _MAX_DEPTH:
            continue
        if isinstance(exc, OSError) and exc.errno is not None:
            found = exc
        if isinstance(exc, BaseExceptionGroup):
            pending.extend((inner, depth + 1) for inner in reversed(exc.exceptions))
        if exc.__cause__ is not None:
            pending.append((exc.__cause__, depth + 1))
    return found


def _host_and_port(error: ConnectError) -> tuple[str, str]:
    """Host and ``host:port`` of the request that failed (the port even when default)."""
    try:
        url = error.request.url
    except RuntimeError:  # an error raised without its request
        return "the server", "the server"
    host = f"[{url.host}]" if ":" in url.host else url.host
    return host, f"{host}:{url.effective_port}"


def _describe_os_error(error: OSError, host: str, address: str) -> str:
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host}: {error.strerror}"
    if error.errno == errno.ECONNREFUSED:
        return f"connection refused to {address}"
    reason = error.strerror or str(error)
    return f"cannot connect to {address}: {reason[:1].lower()}{reason[1:]}"


def short_cause(error: BaseException) -> str:
    """``describe_failure``, or the error's own few-word ``cause`` when it has one
    (``RobotsUnavailable`` does), for a summary naming many failed URLs."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, str) and cause else describe_failure(error)


def describe_status(status: int, reason: str) -> str:
    """``HTTP 503 Service Unavailable``, with the standard phrase when the server sent none."""
    if not reason:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            return f"HTTP {status}"
    return f"HTTP {status} {reason}"
