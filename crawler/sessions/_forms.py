"""Filling in HTML forms the way a browser would submit them.

Logging in means posting a form whose hidden inputs (CSRF tokens, nonces)
must be sent back exactly, so a form is read whole: every successful control
with its default value, then the caller's fields on top.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from selectolax.lexbor import LexborHTMLParser, LexborNode

from .._links import resolve_url

__all__ = ["Click", "FormError", "FormSubmission", "fill_form", "find_form", "form_submission"]

FieldValue = str | int | float | list[str]


class FormError(ValueError):
    """The form could not be found or filled as asked."""


@dataclass(frozen=True, slots=True)
class FormSubmission:
    """What submitting a form sends: ready to become a request."""

    method: str
    url: str
    body: bytes
    content_type: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": self.content_type} if self.content_type else {}


def _find_form(tree: LexborHTMLParser, selector: str | None, page_url: str) -> LexborNode:
    if selector is None:
        form = tree.css_first("form")
        if form is None:
            raise FormError(f"No <form> on {page_url}")
        return form
    node = tree.css_first(selector)
    if node is None:
        raise FormError(f"No element matches {selector!r} on {page_url}")
    form = _enclosing_form(node) or node.css_first("form")
    if form is None:
        raise FormError(
            f"{selector!r} on {page_url} is a <{node.tag}> neither inside a <form> nor holding one"
        )
    return form


def _enclosing_form(node: LexborNode) -> LexborNode | None:
    """The form a control belongs to, so a selector may name a button or field of it
    (as Scrapy's ``formcss`` does) rather than the form itself."""
    current: LexborNode | None = node
    while current is not None:
        if current.tag == "form":
            return current
        current = current.parent
    return None


def _default_values(form: LexborNode) -> list[tuple[str, str]]:
    """The successful controls of a form and their values, as a browser collects them."""
    pairs: list[tuple[str, str]] = []
    for control in form.css("input, select, textarea"):
        attrs = control.attributes
        name = attrs.get("name")
        if not name or "disabled" in attrs:
            continue
        if control.tag == "select":
            options = control.css("option")
            chosen = [o for o in options if "selected" in o.attributes] or options[:1]
            if "multiple" in attrs:
                chosen = [o for o in options if "selected" in o.attributes]
            pairs.extend((name, _option_value(o)) for o in chosen)
        elif control.tag == "textarea":
            pairs.append((name, control.text(deep=True)))
        else:
            kind = (attrs.get("type") or "text").lower()
            if kind in ("submit", "image", "button", "reset", "file"):
                continue
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                continue
            value = attrs.get("value")
            pairs.append(
                (name, "on" if value is None and kind in ("checkbox", "radio") else value or "")
            )
    return pairs


def _option_value(option: LexborNode) -> str:
    value = option.attributes.get("value")
    return value if value is not None else option.text(deep=True).strip()


_CLICKABLES = "input[type=submit], input[type=image], button[type=submit], button:not([type])"

#: How a caller picks the button a browser would click: its name or value (a string),
#: attributes it must have plus ``nr`` for its position among the buttons that have
#: them (a mapping), or ``None`` for the first button.
Click = str | Mapping[str, Any] | None


def _submit_pair(form: LexborNode, click: Click, page_url: str) -> list[tuple[str, str]]:
    """The clicked button's name=value, as browsers send it."""
    buttons = form.css(_CLICKABLES)
    if isinstance(click, str):
        buttons = [
            b for b in buttons if click in (b.attributes.get("name"), b.attributes.get("value"))
        ]
        if not buttons:
            raise FormError(f"No submit button named or labelled {click!r} on {page_url}")
    elif click is not None:
        buttons = _clicked(buttons, click, page_url)
    for button in buttons[:1]:
        name = button.attributes.get("name")
        if name:
            return [(name, button.attributes.get("value") or "")]
    return []


def _clicked(
    buttons: list[LexborNode], click: Mapping[str, Any], page_url: str
) -> list[LexborNode]:
    """The buttons matching every attribute of ``click``; ``nr`` then picks one of those
    by position, as in Scrapy, so ``{"name": "go", "nr": 1}`` is the second "go" button."""
    wanted = {k: str(v) for k, v in click.items() if k != "nr"}
    matched = [b for b in buttons if all(b.attributes.get(k) == v for k, v in wanted.items())]
    if not matched:
        raise FormError(f"No submit button matches clickdata {dict(click)!r} on {page_url}")
    nr = click.get("nr")
    if nr is None:
        return matched
    if type(nr) is not int or not 0 <= nr < len(matched):
        among = f" matching {wanted!r}" if wanted else ""
        raise FormError(
            f"clickdata nr={nr!r}: the form on {page_url} has {len(matched)} submit buttons{among}"
        )
    return [matched[nr]]


def _merge(defaults: list[tuple[str, str]], fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    given = {name for name in fields}
    merged = [(k, v) for k, v in defaults if k not in given]
    for name, value in fields.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        merged.extend((name, str(v)) for v in values)
    return merged


def _multipart(pairs: list[tuple[str, str]]) -> tuple[bytes, str]:
    boundary = "----crawlerform" + secrets.token_hex(12)
    parts = []
    for name, value in pairs:
        safe_name = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{safe_name}"\r\n\r\n{value}\r\n'
        )
    parts.append(f"--{boundary}--\r\n")
    return "".join(parts).encode("utf-8"), f"multipart/form-data; boundary={boundary}"


def _css_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def find_form(
    tree: LexborHTMLParser,
    page_url: str,
    *,
    css: str | None = None,
    name: str | None = None,
    form_id: str | None = None,
    number: int = 0,
) -> LexborNode:
    """The form a caller names, as Scrapy's ``FormRequest.from_response`` picks it: by
    ``name``, then ``form_id``, then ``css`` (an element inside a form picks that form),
    and otherwise the form at position ``number``."""
    if name is not None:
        return _find_form(tree, f"form[name={_css_string(name)}]", page_url)
    if form_id is not None:
        return _find_form(tree, f"form[id={_css_string(form_id)}]", page_url)
    if css is not None:
        return _find_form(tree, css, page_url)
    forms = tree.css("form")
    if not forms:
        raise FormError(f"No <form> on {page_url}")
    if type(number) is not int or not 0 <= number < len(forms):
        raise FormError(f"No form number {number!r} on {page_url}: it has {len(forms)} forms")
    return forms[number]


def form_submission(
    tree: LexborHTMLParser,
    form: LexborNode,
    page_url: str,
    fields: Mapping[str, Any],
    *,
    click: Click = None,
    dont_click: bool = False,
    method: str | None = None,
) -> FormSubmission:
    """What a browser sends for ``form`` of the page ``tree``: its successful controls
    with ``fields`` on top (``None`` leaves a field out), and the clicked button's
    name=value unless ``dont_click``. ``method`` overrides the form's own."""
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base = resolve_url(page_url, base_node.attributes.get("href") or "") or page_url
    action = (form.attributes.get("action") or "").strip()
    url = resolve_url(base, action) if action else page_url.partition("#")[0]
    if url is None:
        raise FormError(f"Form action {action!r} on {page_url} is not an http(s) URL")
    pairs = _merge(_default_values(form), fields)
    if not dont_click:
        pairs += _submit_pair(form, click, page_url)
    if method is None:
        method = (form.attributes.get("method") or "GET").upper()
        if method not in ("GET", "POST"):
            method = "POST"  # as browsers do with "dialog" and unknown methods
    else:
        method = method.upper()
    if method == "GET":
        query = urlencode(pairs)
        url = url.partition("?")[0] + ("?" + query if query else "")
        return FormSubmission("GET", url, b"", None)
    enctype = (form.attributes.get("enctype") or "").lower()
    if enctype == "multipart/form-data":
        body, content_type = _multipart(pairs)
        return FormSubmission(method, url, body, content_type)
    return FormSubmission(
        method, url, urlencode(pairs).encode("ascii"), "application/x-www-form-urlencoded"
    )


def fill_form(
    html: str | bytes,
    page_url: str,
    fields: Mapping[str, Any],
    *,
    selector: str | None = None,
    submit: str | None = None,
) -> FormSubmission:
    """Find the form, keep its hidden and default values, apply ``fields``, encode it."""
    tree = LexborHTMLParser(html)
    form = _find_form(tree, selector, page_url)
    return form_submission(tree, form, page_url, fields, click=submit)
