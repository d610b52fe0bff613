"""Canonical URLs, fingerprints and the seen filter."""

from __future__ import annotations

from hashlib import blake2b

import pytest

from crawler.frontier._fingerprint import (
    FingerprintSet,
    SeenFilter,
    canonicalize_url,
    request_fingerprint,
)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://a.com/x", "http://a.com/x"),
        ("http://a.com/x#frag", "http://a.com/x"),
        ("HTTP://A.COM:80/x", "http://a.com/x"),
        ("https://a.com:443/x", "https://a.com/x"),
        ("https://a.com:8443/x", "https://a.com:8443/x"),
        ("http://a.com", "http://a.com/"),
        ("http://a.com/a/./b/../c", "http://a.com/a/c"),
        ("http://a.com/item?v=2&id=7", "http://a.com/item?id=7&v=2"),
        ("http://a.com/item?id=7&v=2", "http://a.com/item?id=7&v=2"),
        ("http://a.com/s?b=&a=", "http://a.com/s?a=&b="),
        ("http://a.com/s?b&a", "http://a.com/s?a&b"),
        ("http://a.com/s?a=2&b=1&a=1", "http://a.com/s?a=2&a=1&b=1"),
        ("http://a.com/s?&&b=1&&a=1&", "http://a.com/s?a=1&b=1"),
        ("http://a.com/s?", "http://a.com/s"),
        ("http://a.com/s?#f", "http://a.com/s"),
        ("http://a.com/%7e/%c3%a9?q=%e2%82%ac", "http://a.com/%7E/%C3%A9?q=%E2%82%AC"),
        ("http://a.com/%7E", "http://a.com/%7E"),
        ("http://a.com/%zz", "http://a.com/%zz"),
        ("http://a.com/a b", "http://a.com/a%20b"),
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
    ],
)
def test_canonicalize_url(url: str, canonical: str) -> None:
    assert canonicalize_url(url) == canonical


def test_canonicalize_is_idempotent() -> None:
    for url in ["HTTP://A.com:80/a/../b?z=1&a=%7e#x", "http://a.com/s?b&a=&&c=1"]:
        once = canonicalize_url(url)
        assert canonicalize_url(once) == once


@pytest.mark.parametrize("url", ["mailto:a@b", "/relative", "ftp://a.com/x", "http://[bad/"])
def test_canonicalize_rejects_non_http(url: str) -> None:
    with pytest.raises(ValueError, match="cannot canonicalize"):
        canonicalize_url(url)


def test_fingerprint_identifies_method_url_and_body() -> None:
    fp = request_fingerprint("GET", "http://a.com/item?v=2&id=7")
    assert len(fp) == 16
    assert fp == request_fingerprint("get", "HTTP://A.com:80/item?id=7&v=2#x")
    assert fp != request_fingerprint("HEAD", "http://a.com/item?id=7&v=2")
    assert fp != request_fingerprint("GET", "http://a.com/item?id=7&v=3")
    post = request_fingerprint("POST", "http://a.com/f", b"a=1")
    assert post != request_fingerprint("POST", "http://a.com/f", b"a=2")
    assert post != request_fingerprint("POST", "http://a.com/f")


def test_seen_filter_dedups_raw_and_canonical_forms() -> None:
    seen = SeenFilter()
    assert seen.add_url("GET", "http://a.com/item?v=2&id=7")
    assert not seen.add_url("GET", "http://a.com/item?v=2&id=7")  # same string
    assert not seen.add_url("GET", "http://a.com/item?id=7&v=2")  # same canonical form
    assert not seen.add_url("GET", "http://A.com:80/item?id=7&v=2#reviews")
    assert seen.add_url("GET", "http://a.com/item?id=8&v=2")
    assert seen.add_url("POST", "http://a.com/item?id=8&v=2", b"x=1")
    assert not seen.add_url("POST", "http://a.com/item?v=2&id=8", b"x=1")
    assert seen.add_url("POST", "http://a.com/item?id=8&v=2", b"x=2")
    assert len(seen) == 4


def test_seen_filter_stays_correct_when_raw_cache_rolls_over() -> None:
    seen = SeenFilter(raw_cache_size=3)
    urls = [f"http://a.com/p/{i}?b=1&a=2" for i in range(20)]
    assert all(seen.add_url("GET", u) for u in urls)
    # Every string has long left the tiny raw cache; answers come from fingerprints.
    assert not any(seen.add_url("GET", u) for u in urls)
    assert not any(seen.add_url("GET", u.replace("?b=1&a=2", "?a=2&b=1")) for u in urls)
    assert len(seen) == 20


def test_seen_filter_restores_from_fingerprints() -> None:
    first = SeenFilter()
    first.add_url("GET", "http://a.com/x")
    first.add_url("POST", "http://a.com/y", b"q")
    resumed = SeenFilter(fingerprints=first.fingerprints())
    assert not resumed.add_url("GET", "http://a.com/x")
    assert not resumed.add_url("POST", "http://a.com/y", b"q")
    assert resumed.add_url("GET", "http://a.com/z")
    assert request_fingerprint("GET", "http://a.com/z") in resumed


def test_seen_filter_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="raw_cache_size"):
        SeenFilter(raw_cache_size=0)
    seen = SeenFilter()
    with pytest.raises(ValueError, match="mailto:x"):
        seen.add_url("GET", "mailto:x")
    assert len(seen) == 0


def test_fingerprint_set_grows_and_keeps_every_entry() -> None:
    fps = [blake2b(str(i).encode(), digest_size=16).digest() for i in range(5000)]
    table = FingerprintSet()
    assert all(table.add(fp) for fp in fps)  # several grows on the way
    assert len(table) == 5000
    assert not any(table.add(fp) for fp in fps)
    assert all(fp in table for fp in fps)
    assert blake2b(b"other", digest_size=16).digest() not in table
    assert sorted(table) == sorted(fps)
    assert table.nbytes <= 5000 * 16 / 0.35


def test_fingerprint_set_handles_colliding_slots_and_zero() -> None:
    table = FingerprintSet()
    # Same low bytes: all land on one slot and must probe past each other.
    same_slot = [bytes(8) + i.to_bytes(8, "little") for i in range(1, 50)]
    assert all(table.add(fp) for fp in same_slot)
    assert all(fp in table for fp in same_slot)
    zero = bytes(16)
    assert zero not in table
    assert table.add(zero)
    assert not table.add(zero)
    assert zero in table and len(table) == 50
    assert set(FingerprintSet(table)) == {*same_slot, zero}


def test_fingerprint_set_rejects_wrong_sizes() -> None:
    table = FingerprintSet()
    with pytest.raises(ValueError, match="16 bytes, got 20"):
        table.add(b"x" * 20)
    assert b"x" * 20 not in table
    assert "text" not in table
