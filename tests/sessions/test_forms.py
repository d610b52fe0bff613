"""Form filling: hidden inputs survive, defaults are kept, encodings are right."""

from urllib.parse import parse_qsl

import pytest
from selectolax.lexbor import LexborHTMLParser

from crawler.sessions._forms import FormError, fill_form, find_form

LOGIN = """
<html><head><base href="/app/"></head><body>
<form id="search" action="/search"><input name="q"></form>
<form id="login" action="login" method="post">
  <input type="hidden" name="csrf_token" value="tok&amp;123">
  <input name="username" value="">
  <input type="password" name="password">
  <input type="checkbox" name="remember" checked>
  <input type="checkbox" name="newsletter" value="yes">
  <input type="text" name="off" value="x" disabled>
  <select name="lang">
    <option value="en">English</option><option value="fr" selected>French</option>
  </select>
  <textarea name="note">hello</textarea>
  <input type="submit" name="go" value="Sign in">
</form></body></html>
"""


def test_login_form_keeps_hidden_and_default_values() -> None:
    sub = fill_form(LOGIN, "http://h/start", {"username": "u", "password": "p"}, selector="#login")
    assert sub.method == "POST"
    assert sub.url == "http://h/app/login"
    assert sub.content_type == "application/x-www-form-urlencoded"
    assert parse_qsl(sub.body.decode()) == [
        ("csrf_token", "tok&123"),
        ("remember", "on"),
        ("lang", "fr"),
        ("note", "hello"),
        ("username", "u"),
        ("password", "p"),
        ("go", "Sign in"),
    ]


def test_get_form_puts_fields_in_query() -> None:
    sub = fill_form(LOGIN, "http://h/start", {"q": "a b"})
    assert sub.method == "GET"
    assert sub.url == "http://h/search?q=a+b"
    assert sub.body == b""


def test_multipart_form() -> None:
    html = '<form method="post" enctype="multipart/form-data"><input name="a" value="1"></form>'
    sub = fill_form(html, "http://h/p", {"b": "2"})
    assert sub.content_type is not None and sub.content_type.startswith("multipart/form-data")
    boundary = sub.content_type.split("boundary=")[1]
    assert sub.body.count(f"--{boundary}".encode()) == 3
    assert b'name="a"\r\n\r\n1\r\n' in sub.body
    assert sub.url == "http://h/p"


def test_missing_form_is_a_clear_error() -> None:
    with pytest.raises(FormError, match="No element matches '#nope' on http://h/p"):
        fill_form(LOGIN, "http://h/p", {}, selector="#nope")
    with pytest.raises(FormError, match="No <form> on http://h/empty"):
        fill_form("<p>nothing</p>", "http://h/empty", {})


PAGE = LexborHTMLParser(
    """<div id="top"><form id="a"><input name="q"></form></div>
    <form id="b"><fieldset><button id="go">Go</button></fieldset></form>
    <p id="loose"><button>Lost</button></p>"""
)


def test_css_picks_the_form_holding_the_element_or_held_by_it() -> None:
    def chosen(css: str) -> str | None:
        return find_form(PAGE, "http://h/p", css=css).attributes.get("id")

    assert chosen("#go") == "b"
    assert chosen("#b") == "b"
    assert chosen("form input") == "a"
    assert chosen("#top") == "a"


def test_css_matching_no_form_is_a_clear_error() -> None:
    with pytest.raises(FormError, match=r"'#loose' on http://h/p is a <p> neither inside a"):
        find_form(PAGE, "http://h/p", css="#loose")
    with pytest.raises(FormError, match=r"No element matches '#none' on http://h/p"):
        find_form(PAGE, "http://h/p", css="#none")
