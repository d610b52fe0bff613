"""``view()`` of ``crawl shell``: the page saved so that it renders, then a browser or a path.

The prompt itself runs through the real command in test_shell_check_e2e.py; a
browser cannot be opened from a test, so ``webbrowser`` is replaced here.
"""

from __future__ import annotations

import webbrowser
from typing import Any

import pytest

from crawler import Response, Spider
from crawler.cli._shell import Shell, _Opened, _Trio

PAGE = '<html><head><title>T</title></head><body><img src="a.png"></body></html>'


def shell_on(response: Response | None) -> Shell:
    return Shell(_Trio(), _Opened(Spider(), None, None), response)  # type: ignore[arg-type]


class Browser:
    def __init__(self) -> None:
        self.opened: list[str] = []

    def open(self, url: str) -> bool:
        self.opened.append(url)
        return True


def test_view_saves_the_page_with_a_base_and_opens_it_in_a_browser(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    browser = Browser()
    monkeypatch.setattr(webbrowser, "get", lambda: browser)
    path = shell_on(Response.from_body("http://quotes.test/page/1/", PAGE)).view()
    try:
        assert browser.opened == [path.as_uri()]
        # Relative links and images resolve against the page's own URL.
        assert path.read_text(encoding="utf-8") == PAGE.replace(
            "<head>", '<head><base href="http://quotes.test/page/1/">'
        )
        assert capsys.readouterr().out == f"Opened {path} in a browser\n"
    finally:
        path.unlink()


def test_view_without_a_browser_says_where_the_page_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_browser() -> Any:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    page = '<base href="http://elsewhere.test/"><p>x</p>'
    path = shell_on(None).view(Response.from_body("http://quotes.test/", page))
    try:
        assert path.read_text(encoding="utf-8") == page  # its own <base> is kept
        assert capsys.readouterr().out == f"No browser found; the page is saved in {path}\n"
    finally:
        path.unlink()


def test_view_before_any_page_says_so() -> None:
    with pytest.raises(ValueError, match="view: no response yet; fetch a page first"):
        shell_on(None).view()


def test_the_help_lists_what_the_prompt_offers(capsys: pytest.CaptureFixture[str]) -> None:
    shell = shell_on(Response.from_body("http://quotes.test/", PAGE))
    shell.shelp()
    text = capsys.readouterr().out
    for name in ("response", "request", "spider", "settings", "fetch(", "view(", "shelp("):
        assert name in text
    assert text.endswith("response is <Response [200] http://quotes.test/>\n")
    assert set(shell.namespace) >= {"response", "request", "spider", "settings", "fetch"}


@pytest.mark.parametrize("target", ["http://[::1", "ftp://quotes.test/", "/page/2/"])
def test_fetch_refuses_what_is_not_an_http_url_naming_it(target: str) -> None:
    # Without a page to resolve it against, a path is no URL either.
    with pytest.raises(ValueError) as caught:
        shell_on(None)._request(target)
    assert str(caught.value) == (
        f"fetch: URL {target!r} is not an absolute http:// or https:// URL"
    )


def test_fetch_resolves_a_path_against_the_page() -> None:
    shell = shell_on(Response.from_body("http://quotes.test/page/1/", PAGE))
    assert shell._request("/page/2/").url == "http://quotes.test/page/2/"
