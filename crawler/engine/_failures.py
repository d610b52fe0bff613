"""Why a request failed, in the few words a person needs to act on it.

The HTTP layer's errors name the URL, and its network errors also carry a
``reason`` without it, in the operating system's words ("connection refused
to 127.0.0.1:1 (ECONNREFUSED)"): a crawl's log lines and summaries name the
URL themselves. It runs once per failed request, never on the hot path.
"""

from __future__ import annotations

from http import HTTPStatus

from ..http import HTTPError, NetworkError

__all__ = ["describe_failure", "describe_status", "short_cause"]


def describe_failure(error: BaseException) -> str:
    """What went wrong: a network error's reason, else the error's message (with its
    type, when it is not one of the HTTP layer's errors)."""
    if isinstance(error, NetworkError):
        return error.reason
    text = str(error)
    if isinstance(error, HTTPError):
        return text or type(error).__name__
    # Not from the HTTP layer (a bug, a mock): its type is part of the story.
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
