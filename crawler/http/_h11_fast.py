"""Every use of h11's private internals, behind a public-API fallback.

Building an ``h11.Request`` through its constructor re-checks every header
with h11's regexes and copies the list twice; reading a response's headers
through h11's public API builds a list of pairs per response. On the hot
path both are avoidable with h11 0.16's internals: its ``Headers`` class
keeps (name, lower-cased name, value) triples in ``_full_items``, events are
frozen dataclasses whose slots can be filled directly, and ``_parsed=True``
skips the header checks. Those are private, so they live here only, and are
used only if the installed h11 is the version they were written for *and*
a probe at import shows they still behave: an event built the fast way must
go through a real ``h11.Connection`` to the same bytes and state as one
built publicly, and a parsed response must read back the same triples.
Otherwise the public implementation, with the same signatures, is chosen.

Either way the caller has checked every header (``check_header``) before
calling these: neither implementation is where headers are validated. The
public one also lets h11 check them, which only ever refuses more.

The choice is made once, at import, by binding the module-level names
``request_from_triples``, ``request_from_pairs`` and ``response_triples``;
callers look them up on this module, so there is no per-request branch.
``use()`` rebinds them, so that the tests can run both.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import h11

__all__ = [
    "FAST",
    "FAST_VERSION",
    "REASON",
    "Triple",
    "active",
    "probe",
    "request_from_pairs",
    "request_from_triples",
    "response_triples",
    "use",
]

#: The h11 release (major, minor) whose internals the fast implementation uses.
FAST_VERSION = (0, 16)

Triple = tuple[bytes, bytes, bytes]
Pair = tuple[bytes, bytes]

try:
    from h11._headers import Headers as _H11Headers
except ImportError:  # pragma: no cover - an h11 without the module: public API only
    _H11Headers = None  # type: ignore[assignment,misc]

_H11Request = h11.Request
_new_event = object.__new__
_set_attr = object.__setattr__


# -- the fast implementation (h11 0.16 internals) ---------------------------------


def _fast_request_from_triples(method: bytes, target: bytes, triples: list[Triple]) -> h11.Request:
    """An ``h11.Request`` from checked, encoded header triples, Host first.

    h11's constructor would spend a few microseconds re-checking what the
    caller has checked; only a method and target known to be valid, and no
    header that h11 itself interprets on sending (Content-Length,
    Transfer-Encoding), may come this way.
    """
    event = _new_event(_H11Request)
    _set_attr(event, "method", method)
    _set_attr(event, "target", target)
    _set_attr(event, "headers", _H11Headers(triples))
    _set_attr(event, "http_version", b"1.1")
    return event


def _fast_request_from_pairs(method: bytes, target: bytes, pairs: list[Pair]) -> h11.Request:
    """An ``h11.Request`` whose headers the caller has checked: h11 still checks
    the method and target, and normalises Host, Content-Length and
    Transfer-Encoding, but does not run its header regexes again."""
    return _H11Request(method=method, target=target, headers=pairs, _parsed=True)


def _fast_response_triples(response: Any) -> list[Triple]:
    """h11's own (name, lower-cased name, value) triples: nothing built per response."""
    return response.headers._full_items  # type: ignore[no-any-return]


# -- the public implementation ----------------------------------------------------


def _public_request_from_triples(
    method: bytes, target: bytes, triples: list[Triple]
) -> h11.Request:
    """The same event through h11's constructor, which checks everything again."""
    return _public_request_from_pairs(method, target, [(name, value) for name, _, value in triples])


def _public_request_from_pairs(method: bytes, target: bytes, pairs: list[Pair]) -> h11.Request:
    """``h11.Request`` as documented; a header h11 refuses is named in the error.

    Spaces and tabs around a value are not part of it (RFC 9110 5.5), and h11
    refuses them, so they are dropped: the message means the same.
    """
    pairs = [(name, value.strip(b" \t")) for name, value in pairs]
    try:
        return h11.Request(method=method, target=target, headers=pairs)
    except h11.LocalProtocolError:
        _name_refused_header(pairs)
        raise


def _name_refused_header(pairs: list[Pair]) -> None:
    """Raise h11's refusal of the first header it refuses alone, naming it.

    h11's own message quotes the value, which may be a credential (errors end
    up in logs), and not the name. Only reached when a request is failing.
    """
    for name, value in pairs:
        try:
            # HTTP/1.0 needs no Host: only this one header can be refused.
            h11.Request(method=b"GET", target=b"/", headers=[(name, value)], http_version=b"1.0")
        except h11.LocalProtocolError as exc:
            shown = name.decode("latin-1")
            reason = str(exc)
            if reason.startswith("Illegal header"):
                reason = "a character h11 does not allow"
            raise h11.LocalProtocolError(f"Invalid header {shown!r}: {reason}") from None


def _public_response_triples(response: Any) -> list[Triple]:
    """Triples from h11's documented API: ``raw_items()`` keeps the names' case."""
    headers = response.headers
    raw: Sequence[Pair] = headers.raw_items() if _HAS_RAW_ITEMS else headers
    return [(name, name.lower(), value) for name, value in raw]


_HAS_RAW_ITEMS = hasattr(h11.Response(status_code=200, headers=[]).headers, "raw_items")

# -- choosing one -----------------------------------------------------------------

_Builder = Callable[[bytes, bytes, list[Any]], h11.Request]
_Reader = Callable[[Any], list[Triple]]
_FAST: tuple[_Builder, _Builder, _Reader] = (
    _fast_request_from_triples,
    _fast_request_from_pairs,
    _fast_response_triples,
)
_PUBLIC: tuple[_Builder, _Builder, _Reader] = (
    _public_request_from_triples,
    _public_request_from_pairs,
    _public_response_triples,
)

_PROBE_TRIPLES: list[Triple] = [
    (b"Host", b"host", b"probe.test"),
    (b"User-Agent", b"user-agent", b"probe/1"),
    (b"accept", b"accept", b"*/*"),
    (b"Connection", b"connection", b"close"),
]
_PROBE_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Probe: a, b\r\n\r\nok"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def _exchange(builders: tuple[_Builder, _Builder, _Reader], pairs: bool) -> tuple[Any, ...]:
    """What a client connection writes and reads with one implementation: the
    request bytes, h11's state after them, and the response's triples."""
    build_triples, build_pairs, read = builders
    if pairs:
        event = build_pairs(b"GET", b"/p?q=1", [(n, v) for n, _, v in _PROBE_TRIPLES])
    else:
        event = build_triples(b"GET", b"/p?q=1", list(_PROBE_TRIPLES))
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(event) + conn.send(h11.EndOfMessage())
    conn.receive_data(_PROBE_RESPONSE)
    response = conn.next_event()
    return data, conn.our_state, type(response), list(read(response))


def probe() -> str | None:
    """Why the fast implementation cannot be used with the installed h11, or None.

    Checks the version, that the private names exist, and that the fast and
    public implementations give the same bytes, states and headers.
    """
    version = getattr(h11, "__version__", "")
    if _version(version) != FAST_VERSION:
        return f"h11 {version or '(unknown version)'} is not {'.'.join(map(str, FAST_VERSION))}"
    headers_module = getattr(h11, "_headers", None)
    if getattr(headers_module, "Headers", None) is not _H11Headers or _H11Headers is None:
        return "h11._headers.Headers is missing"
    try:
        public = _exchange(_PUBLIC, pairs=False)
        for pairs in (False, True):
            fast = _exchange(_FAST, pairs)
            if fast != public:
                return f"h11 internals behave differently: {fast!r} != {public!r}"
    except Exception as exc:  # any failure at all means: do not rely on internals
        return f"h11 internals are not as expected: {exc!r}"
    return None


request_from_triples: _Builder
request_from_pairs: _Builder
response_triples: _Reader


def use(fast: bool) -> bool:
    """Bind the fast (True) or public (False) implementation; return whether the
    fast one was bound before. The fast one only if the probe allowed it."""
    global request_from_triples, request_from_pairs, response_triples
    before = active()
    chosen = _FAST if fast and FAST else _PUBLIC
    request_from_triples, request_from_pairs, response_triples = chosen
    return before


def active() -> bool:
    """Whether the fast implementation is the one bound now."""
    return globals().get("response_triples") is _fast_response_triples


#: Why the fast implementation is not used (None: it is).
REASON = probe()
#: Whether the installed h11 allows the fast implementation.
FAST = REASON is None
if REASON is not None:
    logging.getLogger(__name__).info("HTTP/1.1 uses h11's public API only: %s", REASON)
use(FAST)
