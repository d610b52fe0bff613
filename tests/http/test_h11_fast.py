"""The choice between h11's internals and its public API, and what both put on the wire.

``_h11_fast`` uses h11 0.16's internals only if a probe at import finds them
as expected; these tests break each thing the probe relies on and check that
it then chooses the public API, that the installed h11 gets the fast path,
and that both implementations send the same bytes, read the same headers and
refuse bad headers before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h11
import pytest
import trio

from crawler.http import BearerAuth, Client, LocalProtocolError, _h11_fast
from tests.http.pools import GUARD
from tests.servers import recorder

_H11_VERSION: str = getattr(h11, "__version__", "")


def _installed_version() -> tuple[int, ...]:
    return _h11_fast._version(_H11_VERSION)


def test_installed_h11_gets_the_fast_path() -> None:
    if _installed_version() != _h11_fast.FAST_VERSION:
        assert not _h11_fast.FAST
        assert _H11_VERSION in str(_h11_fast.REASON)
        return
    assert _h11_fast.probe() is None
    assert _h11_fast.FAST and _h11_fast.REASON is None


def test_another_h11_version_gets_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h11, "__version__", "0.17.0")
    assert _h11_fast.probe() == "h11 0.17.0 is not 0.16"


def test_missing_internals_get_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h11, "__version__", "0.16.0")
    monkeypatch.delattr(h11._headers, "Headers")
    assert _h11_fast.probe() == "h11._headers.Headers is missing"


def _case_folding_request(method: bytes, target: bytes, triples: list[Any]) -> h11.Request:
    """The fast builder, had h11's Headers started writing names as given lower-cased."""
    folded = [(lower, lower, value) for _, lower, value in triples]
    return _h11_fast._fast_request_from_triples(method, target, folded)


def _no_full_items(response: Any) -> list[tuple[bytes, bytes, bytes]]:
    return response.headers._no_such_attribute  # type: ignore[no-any-return]


@pytest.mark.parametrize("broken", ["request-bytes", "response-reader"])
def test_internals_that_behave_differently_get_the_public_api(
    monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    monkeypatch.setattr(h11, "__version__", "0.16.0")
    triples, pairs, read = _h11_fast._FAST
    if broken == "request-bytes":
        monkeypatch.setattr(_h11_fast, "_FAST", (_case_folding_request, pairs, read))
        expected = "behave differently"
    else:
        monkeypatch.setattr(_h11_fast, "_FAST", (triples, pairs, _no_full_items))
        expected = "not as expected: AttributeError"
    reason = _h11_fast.probe()
    assert reason is not None and expected in reason


@pytest.fixture
def restore_h11_api() -> Iterator[None]:
    before = _h11_fast.active()
    yield
    _h11_fast.use(before)


@pytest.mark.usefixtures("restore_h11_api")
def test_use_binds_the_fast_path_only_if_the_probe_allowed_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _h11_fast.use(False)
    assert _h11_fast.response_triples is _h11_fast._public_response_triples
    monkeypatch.setattr(_h11_fast, "FAST", False)
    _h11_fast.use(True)
    assert not _h11_fast.active()
    assert _h11_fast.request_from_triples is _h11_fast._public_request_from_triples
    assert _h11_fast.request_from_pairs is _h11_fast._public_request_from_pairs


async def test_the_connection_looks_the_implementation_up_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A switch made after import reaches connections: the tests of both paths
    would otherwise test one path twice."""

    def refuse(*args: object) -> h11.Request:
        raise h11.LocalProtocolError("switched")

    monkeypatch.setattr(_h11_fast, "request_from_triples", refuse)
    with trio.fail_after(GUARD):
        async with recorder() as (url, server), Client() as client:
            with pytest.raises(LocalProtocolError, match="switched"):
                await client.get(url + "/a")
    assert server.received == b""


@pytest.mark.usefixtures("restore_h11_api")
async def test_both_paths_send_the_same_bytes_and_read_the_same_headers() -> None:
    sent: dict[bool, bytes] = {}
    headers = {"X-Mixed-Case": "v", "accept-language": "en"}
    with trio.fail_after(GUARD):
        async with recorder() as (url, server):
            for fast in [True, False] if _h11_fast.FAST else [False]:
                _h11_fast.use(fast)
                start = len(server.received)
                async with Client() as client:
                    response = await client.get(url + "/a?b=1", headers=headers)
                    assert response.headers.multi_items() == [("Content-Length", "2")]
                    response = await client.post(url + "/p", content=b"body", headers=headers)
                    assert response.content == b"ok"
                await server.quiet()
                sent[fast] = bytes(server.received[start:])
    assert b"\r\nX-Mixed-Case: v\r\n" in sent[False]
    assert b"\r\nContent-Length: 4\r\n" in sent[False]
    if _h11_fast.FAST:
        assert sent[True] == sent[False]


@pytest.mark.usefixtures("h11_api")
@pytest.mark.parametrize("control", ["\x0b", "\x0c", "\x1f", "\x7f"])
async def test_header_value_with_a_control_character_is_refused_on_both_paths(
    control: str,
) -> None:
    """Control characters that cannot split a message are refused all the same, on
    the fast path as h11's public API does, and the token never appears in the
    error (it ends up in logs)."""
    with trio.fail_after(GUARD):
        async with recorder() as (url, server), Client() as client:
            with pytest.raises(LocalProtocolError) as err:
                await client.get(url + "/a", auth=BearerAuth(f"tok{control}en"))
            assert "'Authorization'" in str(err.value)
            assert "tok" not in str(err.value)
            assert (await client.get(url + "/after")).content == b"ok"
        await server.quiet()
    assert b"tok" not in server.received
    assert b"GET /after HTTP/1.1\r\n" in server.received


@pytest.mark.usefixtures("h11_api")
async def test_padded_header_value_is_sent_on_both_paths() -> None:
    with trio.fail_after(GUARD):
        async with recorder() as (url, server), Client() as client:
            response = await client.get(url + "/a", headers={"X-Padded": " v\t"})
            assert response.content == b"ok"
        await server.quiet()
    assert b"\r\nX-Padded: " in server.received
    assert b"v" in server.received.split(b"X-Padded:")[1].split(b"\r\n")[0]
