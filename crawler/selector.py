"""Scrapy-style selectors: ``css("span.text::text").get()``, ``xpath()``, ``re()``.

Spiders written for Scrapy (parsel) call ``response.css(...).get()``; spiders
written for this crawler call ``response.css(...)`` and use the selectolax node
methods (``css_first``, ``text()``, ``attributes``) on the results. Both work on
the same objects: ``css()`` returns a ``SelectorList`` (a list) of ``Selector``
items, and a ``Selector`` of an element offers parsel's methods as well as the
selectolax node's.

CSS runs on the selectolax (lexbor) tree the response already parses: the
pseudo-elements ``::text`` and ``::attr(name)`` are applied here, in Python, to
the elements lexbor matched, so a plain ``css()`` costs one lexbor query and one
small object per match. XPath needs lxml: its tree is parsed only when a spider
first calls ``xpath()``, and once per document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from re import Pattern
from typing import Any, SupportsIndex, overload

from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

__all__ = ["Selector", "SelectorError", "SelectorList"]

# Parsel registers EXSLT regular expressions (``re:test(...)``) for every query.
_NAMESPACES = {"re": "http://exslt.org/regular-expressions"}
_PSEUDO = re.compile(r"::(?:(text)|attr\(\s*([^)\s]+)\s*\))\s*$")
_TEXT = "-text"
_ENTITY = re.compile(r"&(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")
_KEEP_ENTITIES = frozenset({"lt", "amp"})
# libxml2 (so parsel) gives these attributes, written without a value, their own
# name as value: ``<input checked>`` has ``checked="checked"``; others get "".
_BOOLEAN_ATTRIBUTES = frozenset(
    {
        *("checked", "compact", "declare", "defer", "disabled", "ismap", "multiple"),
        *("nohref", "noresize", "noshade", "nowrap", "readonly", "selected"),
    }
)


def _attribute(name: str, value: str | None) -> str:
    if value is None:
        return name if name in _BOOLEAN_ATTRIBUTES else ""
    return value


# What follows the element part of one comma-separated CSS group: None (the
# elements), "" (their text nodes) or an attribute name.
_Pseudo = str | None


class SelectorError(ValueError, SelectolaxError):
    """A CSS or XPath query that cannot be run; the message names the query and why.

    A ValueError as parsel's errors are, and a SelectolaxError as the errors of
    ``response.css()`` were, so that code catching either keeps working.
    """


class _Document:
    """One parsed page shared by every Selector taken from it.

    Each tree is built on first use: the lexbor one (the page's own, for CSS)
    and the lxml one (for XPath, parsed from the page's text), so a spider that
    uses only one kind of query parses the page once.
    """

    __slots__ = ("_lexbor", "_lxml", "_text", "_tree")

    def __init__(self, tree: Callable[[], LexborHTMLParser], text: Callable[[], str]) -> None:
        self._tree = tree
        self._text = text
        self._lexbor: LexborHTMLParser | None = None
        self._lxml: Any = None

    @property
    def lexbor(self) -> LexborHTMLParser:
        parser = self._lexbor
        if parser is None:
            parser = self._lexbor = self._tree()
        return parser

    def lxml_root(self) -> Any:
        root = self._lxml
        if root is None:
            root = self._lxml = _parse_lxml(self._text())
        return root


def document(tree: Callable[[], LexborHTMLParser], text: Callable[[], str]) -> _Document:
    """The shared document of a page, for ``Response``: ``tree()`` is called for CSS,
    ``text()`` for XPath, each at most once."""
    return _Document(tree, text)


def _parse_lxml(text: str) -> Any:
    # As parsel does: a recovering HTML parser on the UTF-8 text, NULs dropped,
    # an empty page read as an empty <html>.
    from lxml import etree, html

    body = text.strip().replace("\x00", "").encode("utf-8") or b"<html/>"
    parser = html.HTMLParser(recover=True, encoding="utf-8", huge_tree=True)
    root = etree.fromstring(body, parser=parser)
    if root is None:
        root = etree.fromstring(b"<html/>", parser=parser)
    return root


class Selector:
    """One match: an element, or a string (a text node, an attribute value, an XPath result).

    ``get()`` gives an element's outer HTML or the string itself. An element
    found by ``css()`` is a selectolax node too: ``css_first()``, ``text()``,
    ``attributes``, ``html`` and any other ``LexborNode`` member work on it.
    ``Selector(text=html)`` parses a document of its own.
    """

    __slots__ = ("_doc", "_el", "_node", "_value")

    _doc: _Document
    _node: LexborNode | None
    _el: Any
    _value: Any

    def __init__(self, text: str) -> None:
        data = text
        parser = LexborHTMLParser(data)
        self._doc = _Document(lambda: parser, lambda: data)
        self._node = self._doc.lexbor.root
        self._el = None
        self._value = None

    @classmethod
    def _of_lxml(cls, item: Any, doc: _Document) -> Selector:
        new = cls.__new__(cls)
        new._doc = doc
        new._node = None
        if isinstance(item, str | bool | float | int):
            new._el = None
            new._value = item
        else:
            new._el = item
            new._value = None
        return new

    @classmethod
    def _of_value(cls, value: str, doc: _Document) -> Selector:
        new = cls.__new__(cls)
        new._doc = doc
        new._node = None
        new._el = None
        new._value = value
        return new

    # --- parsel's API -------------------------------------------------------------

    def css(self, query: str) -> SelectorList:
        """Matches of ``query`` among this element and its descendants (``::text`` and
        ``::attr(name)`` allowed); nothing for a string."""
        node = self._node
        if node is None:
            if self._el is None:
                return SelectorList()
            node = self._lexbor_twin()
        return _css(node, query, self._doc)

    def xpath(
        self, query: str, namespaces: Mapping[str, str] | None = None, **variables: Any
    ) -> SelectorList:
        """Results of the XPath ``query`` with this element as the context node."""
        el = self._el
        if el is None:
            if self._node is None:
                if query.strip() == "." and isinstance(self._value, str):
                    return SelectorList([self])
                return SelectorList()
            el = self._lxml_twin()
        return _xpath(el, query, self._doc, namespaces, variables)

    def get(self) -> str:
        """The element's outer HTML, or the string (an XPath boolean as ``"1"``/``"0"``)."""
        node = self._node
        if node is not None:
            return node.html or ""
        el = self._el
        if el is not None:
            from lxml import etree

            return str(etree.tostring(el, method="html", encoding="unicode", with_tail=False))
        value = self._value
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(value)

    extract = get

    def getall(self) -> list[str]:
        return [self.get()]

    def re(self, regex: str | Pattern[str], replace_entities: bool = True) -> list[str]:
        """Matches of ``regex`` in ``get()``: the group named ``extract``, else every
        numbered group, else the whole match; entities are decoded but ``&lt;`` and
        ``&amp;``, as in parsel."""
        return _regex(regex, self.get(), replace_entities)

    @overload
    def re_first(
        self, regex: str | Pattern[str], default: None = None, replace_entities: bool = True
    ) -> str | None: ...
    @overload
    def re_first(
        self, regex: str | Pattern[str], default: str, replace_entities: bool = True
    ) -> str: ...
    def re_first(
        self,
        regex: str | Pattern[str],
        default: str | None = None,
        replace_entities: bool = True,
    ) -> str | None:
        found = self.re(regex, replace_entities)
        return found[0] if found else default

    @property
    def attrib(self) -> dict[str, str]:
        """The element's attributes (a valueless one as ``""``); empty for a string."""
        node = self._node
        if node is not None:
            return {k: _attribute(k, v) for k, v in node.attributes.items()}
        if self._el is not None:
            return dict(self._el.attrib)
        return {}

    @property
    def root(self) -> Any:
        """What this selector wraps: a selectolax node, an lxml element, or a string."""
        if self._node is not None:
            return self._node
        return self._el if self._el is not None else self._value

    # --- the selectolax node's API, kept for spiders written against it ------------

    @property
    def node(self) -> LexborNode:
        """The selectolax node (an element found by XPath is located in lexbor's tree)."""
        node = self._node
        if node is None:
            if self._el is None:
                raise SelectorError(f"{self!r} is a string, not an element")
            node = self._node = self._lexbor_twin()
        return node

    def css_first(self, query: str, default: Any = None, strict: bool = False) -> Any:
        """The first match of ``query`` as a Selector, or ``default``."""
        node = self._node
        if node is not None and not strict and "::" not in query:  # the common case, first
            try:
                found_node = node.css_first(query)
            except SelectolaxError as exc:
                raise SelectorError(f"invalid CSS selector {query!r}: {exc}") from exc
            return default if found_node is None else _element(found_node, self._doc)
        found = self.css(query)
        if strict and len(found) > 1:
            raise SelectorError(f"{query!r} matched {len(found)} elements, expected one")
        return found[0] if found else default

    def text(self, deep: bool = True, separator: str = "", strip: bool = False) -> str:
        """The text, as selectolax's ``node.text()`` gives it; a string is its own text."""
        node = self._node
        if node is None:
            if self._el is None:
                value = self.get()
                return value.strip() if strip else value
            node = self.node
        text: str = node.text(deep, separator, strip)
        return text

    @property
    def attributes(self) -> dict[str, str | None]:
        attributes: dict[str, str | None] = self.node.attributes
        return attributes

    @property
    def html(self) -> str | None:
        html: str | None = self.node.html
        return html

    @property
    def tag(self) -> str | None:
        tag: str | None = self.node.tag
        return tag

    def __getattr__(self, name: str) -> Any:
        # Only names Selector lacks get here: the rest of LexborNode's API.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.node, name)

    # --- mapping between the two trees -------------------------------------------

    def _lxml_twin(self) -> Any:
        node = self._node
        assert node is not None
        el = _follow_lxml(self._doc.lxml_root(), _lexbor_path(node))
        if el is None:
            raise SelectorError(
                f"cannot run xpath() from <{node.tag}> found by css(): lxml reads the "
                "page's markup differently around it; use response.xpath() instead"
            )
        self._el = el
        return el

    def _lexbor_twin(self) -> LexborNode:
        el = self._el
        node = _follow_lexbor(self._doc.lexbor, _lxml_path(el))
        if node is None:
            raise SelectorError(
                f"cannot run css() from <{el.tag}> found by xpath(): lexbor reads the "
                "page's markup differently around it; use response.css() instead"
            )
        self._node = node
        return node

    def __bool__(self) -> bool:
        return bool(self.get())

    def __repr__(self) -> str:
        data = self.get()
        if len(data) > 40:
            data = data[:37] + "..."
        return f"<Selector data={data!r}>"


_new = object.__new__


def _element(node: LexborNode, doc: _Document) -> Selector:
    """A Selector of an element found by CSS: one per match, so built without __init__."""
    new: Selector = _new(Selector)
    new._doc = doc
    new._node = node
    new._el = None
    new._value = None
    return new


class SelectorList(list[Selector]):
    """A list of Selectors; what it offers applies to each item (``css``, ``xpath``,
    ``getall``, ``re``) or to the first (``get``, ``re_first``, ``attrib``)."""

    __slots__ = ()

    @overload
    def __getitem__(self, index: SupportsIndex) -> Selector: ...
    @overload
    def __getitem__(self, index: slice) -> SelectorList: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Selector | SelectorList:
        if isinstance(index, slice):
            return SelectorList(super().__getitem__(index))
        return super().__getitem__(index)

    def css(self, query: str) -> SelectorList:
        """``css(query)`` of every item, flattened, in item order."""
        out = SelectorList()
        for sel in self:
            out.extend(sel.css(query))
        return out

    def xpath(
        self, query: str, namespaces: Mapping[str, str] | None = None, **variables: Any
    ) -> SelectorList:
        """``xpath(query)`` of every item, flattened, in item order."""
        out = SelectorList()
        for sel in self:
            out.extend(sel.xpath(query, namespaces, **variables))
        return out

    @overload
    def get(self, default: None = None) -> str | None: ...
    @overload
    def get(self, default: str) -> str: ...
    def get(self, default: str | None = None) -> str | None:
        """The first item's ``get()``, or ``default`` when the list is empty."""
        for sel in self:
            return sel.get()
        return default

    extract_first = get

    def getall(self) -> list[str]:
        return [sel.get() for sel in self]

    extract = getall

    def re(self, regex: str | Pattern[str], replace_entities: bool = True) -> list[str]:
        """Every item's ``re()`` matches, flattened."""
        return [found for sel in self for found in sel.re(regex, replace_entities)]

    @overload
    def re_first(
        self, regex: str | Pattern[str], default: None = None, replace_entities: bool = True
    ) -> str | None: ...
    @overload
    def re_first(
        self, regex: str | Pattern[str], default: str, replace_entities: bool = True
    ) -> str: ...
    def re_first(
        self,
        regex: str | Pattern[str],
        default: str | None = None,
        replace_entities: bool = True,
    ) -> str | None:
        """The first match in the first item that has one, or ``default``."""
        for sel in self:
            found = sel.re(regex, replace_entities)
            if found:
                return found[0]
        return default

    @property
    def attrib(self) -> dict[str, str]:
        """The first item's attributes, or an empty dict."""
        for sel in self:
            return sel.attrib
        return {}


# --- CSS on lexbor ------------------------------------------------------------------


def _css(scope: Any, query: str, doc: _Document) -> SelectorList:
    """Run ``query`` on a lexbor node or parser; pseudo-elements applied afterwards."""
    if "::" not in query:
        try:
            nodes = scope.css(query)
        except SelectolaxError as exc:
            raise SelectorError(f"invalid CSS selector {query!r}: {exc}") from exc
        if "," in query:  # lexbor repeats an element matched by two selectors of a list
            nodes = list(dict.fromkeys(nodes))
        return SelectorList([_element(node, doc) for node in nodes])
    groups, uniform = _plan(query)
    if uniform is not None:
        element_css, pseudo, deep = uniform
        return _apply(_matches(scope, element_css, query), pseudo, deep, scope, doc)
    return _mixed(scope, groups, query, doc)


def _select(scope: Any, element_css: str, query: str) -> list[LexborNode]:
    try:
        nodes: list[LexborNode] = scope.css(element_css)
    except SelectolaxError as exc:
        raise SelectorError(f"invalid CSS selector {query!r}: {exc}") from exc
    if "," in element_css:
        nodes = list(dict.fromkeys(nodes))
    return nodes


def _matches(scope: Any, element_css: str, query: str) -> list[LexborNode]:
    """The elements of ``element_css``; an empty one stands for the scope itself."""
    if element_css:
        return _select(scope, element_css, query)
    node = scope if isinstance(scope, LexborNode) else scope.root
    return [node] if node is not None else []


def _apply(
    nodes: list[LexborNode], pseudo: _Pseudo, deep: bool, scope: Any, doc: _Document
) -> SelectorList:
    make = Selector._of_value
    if pseudo is None:
        return SelectorList([_element(node, doc) for node in nodes])
    if deep:
        return SelectorList([make(value, doc) for value in _deep(nodes, pseudo, scope)])
    if pseudo == "":
        return SelectorList([make(text, doc) for text in _texts(nodes, scope)])
    out = SelectorList()
    for node in nodes:
        attrs = node.attrs
        if pseudo in attrs:
            out.append(make(_attribute(pseudo, attrs[pseudo]), doc))
    return out


def _deep(nodes: list[LexborNode], pseudo: str, scope: Any) -> list[str]:
    """``div ::text`` and ``div *::attr(x)``: every text node, or every element's
    attribute, in the subtrees of ``nodes`` (themselves included), in document
    order and each once, as cssselect translates them."""
    tops = _outermost(nodes, set(nodes)) if len(nodes) > 1 and _nested(nodes, scope) else nodes
    values: list[str] = []
    for top in tops:
        if pseudo == "":
            for child in top.traverse(include_text=True):
                if child.tag == _TEXT:
                    values.append(child.text_content or "")
        else:
            for child in top.traverse():
                attrs = child.attrs
                if pseudo in attrs:
                    values.append(_attribute(pseudo, attrs[pseudo]))
    return values


def _mixed(scope: Any, groups: tuple[_Group, ...], query: str, doc: _Document) -> SelectorList:
    """Groups asking for different things (``a::text, a::attr(href)``): the results of
    each element, elements in document order. A group over whole
    subtrees (``div ::text``) among them adds its results after the others'."""
    # Within one element, document order puts the element, then its attributes,
    # then its text.
    flat = sorted((g for g in groups if not g[2]), key=lambda g: (g[1] is not None, g[1] == ""))
    matched = [set(_select(scope, css, query)) for css, _, _ in flat]
    out = SelectorList()
    for node in _select(scope, ", ".join(css for css, _, _ in flat), query):
        for (_, pseudo, _), found in zip(flat, matched, strict=True):
            if node in found:
                out.extend(_apply([node], pseudo, False, scope, doc))
    for css, pseudo, deep in groups:
        if deep:
            out.extend(_apply(_matches(scope, css, query), pseudo, True, scope, doc))
    return out


def _texts(nodes: list[LexborNode], scope: Any) -> list[str]:
    """The text nodes that are children of ``nodes``, in document order.

    When no match lies inside another (the usual case) that is each match's own
    text children in turn; otherwise the enclosing matches are walked once.
    """
    if len(nodes) > 1 and _nested(nodes, scope):
        wanted = set(nodes)
        texts: list[str] = []
        for top in _outermost(nodes, wanted):
            for child in top.traverse(include_text=True):
                if child.tag == _TEXT and child.parent in wanted:
                    texts.append(child.text_content or "")
        return texts
    return [
        child.text_content or ""
        for node in nodes
        for child in node.iter(include_text=True)
        if child.tag == _TEXT
    ]


def _nested(nodes: list[LexborNode], scope: Any) -> bool:
    """Whether a match lies inside another. Matches that are siblings (a list's
    items, a quote's tags) are settled by one parent each."""
    parents = [node.parent for node in nodes]
    first = parents[0]
    if first is not None and all(parent == first for parent in parents):
        return False
    wanted = {node.mem_id for node in nodes}
    stop = scope.mem_id if isinstance(scope, LexborNode) else None
    for parent in parents:
        while parent is not None:
            mem_id = parent.mem_id
            if mem_id == stop:
                break
            if mem_id in wanted:
                return True
            parent = parent.parent
    return False


def _outermost(nodes: list[LexborNode], wanted: set[LexborNode]) -> list[LexborNode]:
    out = []
    for node in nodes:
        parent = node.parent
        while parent is not None and parent not in wanted:
            parent = parent.parent
        if parent is None:
            out.append(node)
    return out


_DEEP = re.compile(r"(?:^|\s)\*?$")


_Group = tuple[str, _Pseudo, bool]


@lru_cache(maxsize=512)
def _plan(query: str) -> tuple[tuple[_Group, ...], _Group | None]:
    """``query`` split into comma-separated groups, each an element selector for
    lexbor, its pseudo-element, and whether that applies to whole subtrees; and,
    when every group asks for the same thing, the one group they make together.

    As cssselect reads them, ``div ::text`` and ``div *::text`` are every text
    node under ``div`` (its own included), and ``div ::attr(x)`` the ``x`` of
    ``div`` and of every element under it; a bare ``::text`` is all the text in scope.
    """
    groups: list[_Group] = []
    for group in _split_groups(query):
        if "::" not in group:
            groups.append((group.strip(), None, False))
            continue
        found = _PSEUDO.search(group)
        if found is None or "::" in group[: found.start()]:
            raise SelectorError(
                f"invalid CSS selector {query!r}: only the pseudo-elements ::text and "
                "::attr(name) are supported, at the end of a selector"
            )
        pseudo = "" if found.group(1) else found.group(2).strip("\"'")
        css = group[: found.start()].lstrip()
        deep = _DEEP.search(css) is not None
        if deep:
            css = css.rstrip()
            css = css[:-1] if css.endswith("*") else css
        groups.append((css.strip(), pseudo, deep))
    kinds = {(pseudo, deep) for _, pseudo, deep in groups}
    if len(kinds) > 1:
        return tuple(groups), None
    _, pseudo, deep = groups[0]
    return tuple(groups), (", ".join(css for css, _, _ in groups), pseudo, deep)


def _split_groups(query: str) -> list[str]:
    """Split on the commas that separate selectors (not those in quotes or brackets)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(query):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(query[start:i])
            start = i + 1
    parts.append(query[start:])
    if any(not part.strip() for part in parts):
        raise SelectorError(f"invalid CSS selector {query!r}: an empty selector in the list")
    return parts


# --- XPath on lxml ------------------------------------------------------------------


def _xpath(
    context: Any,
    query: str,
    doc: _Document,
    namespaces: Mapping[str, str] | None,
    variables: dict[str, Any],
) -> SelectorList:
    from lxml import etree

    spaces = {**_NAMESPACES, **namespaces} if namespaces else _NAMESPACES
    try:
        result = context.xpath(query, namespaces=spaces, smart_strings=False, **variables)
    except etree.XPathError as exc:
        raise SelectorError(f"invalid XPath {query!r}: {exc}") from exc
    if not isinstance(result, list):
        result = [result]
    make = Selector._of_lxml
    return SelectorList([make(item, doc) for item in result])


def _lexbor_path(node: LexborNode) -> list[tuple[str, int]]:
    """From the root down: each element's tag and how many same-tag siblings precede it."""
    steps = []
    current: LexborNode | None = node
    while current is not None and not current.is_document_node:
        tag = current.tag or ""
        count, sibling = 0, current.prev
        while sibling is not None:
            count += sibling.tag == tag
            sibling = sibling.prev
        steps.append((tag, count))
        current = current.parent
    steps.reverse()
    return steps


def _lxml_path(el: Any) -> list[tuple[str, int]]:
    steps = []
    while el is not None:
        tag = el.tag
        steps.append((tag, sum(1 for _ in el.itersiblings(tag, preceding=True))))
        el = el.getparent()
    steps.reverse()
    return steps


def _follow_lxml(root: Any, path: list[tuple[str, int]]) -> Any:
    if not path or path[0] != (root.tag, 0):
        return None
    el = root
    for tag, count in path[1:]:
        same = [child for child in el if child.tag == tag]
        if not same and tag == "tbody" and count == 0 and el.tag == "table":
            continue  # lexbor's implied <tbody>: libxml2 keeps the rows in the table
        if count >= len(same):
            return None
        el = same[count]
    return el


def _follow_lexbor(tree: LexborHTMLParser, path: list[tuple[str, int]]) -> LexborNode | None:
    node = tree.root
    if node is None or not path or path[0] != (node.tag, 0):
        return None
    for tag, count in path[1:]:
        same = [child for child in node.iter() if child.tag == tag]
        if not same and tag == "tr" and node.tag == "table":
            # Rows libxml2 left in the table are in lexbor's one implied <tbody>.
            bodies = [child for child in node.iter() if child.tag == "tbody"]
            if len(bodies) == 1:
                node = bodies[0]
                same = [child for child in node.iter() if child.tag == tag]
        if count >= len(same):
            return None
        node = same[count]
    return node


# --- regular expressions, as parsel applies them ------------------------------------


def _regex(regex: str | Pattern[str], text: str, replace_entities: bool) -> list[str]:
    pattern = re.compile(regex) if isinstance(regex, str) else regex
    if "extract" in pattern.groupindex:
        match = pattern.search(text)
        found = match.group("extract") if match is not None else None
        strings = [found] if found is not None else []
    else:
        strings = list(_flatten(pattern.findall(text)))
    if not replace_entities:
        return strings
    return [_ENTITY.sub(_entity, s) if "&" in s else s for s in strings]


def _flatten(items: Iterable[Any]) -> Iterable[str]:
    for item in items:
        if isinstance(item, tuple):
            yield from item
        else:
            yield item


def _entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name.lower() in _KEEP_ENTITIES:
        return match.group(0)
    if name.startswith("#"):
        try:
            number = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
            return chr(number) if number < 0x110000 else ""
        except ValueError:
            return ""
    import html  # here: most pages need no named entity decoded this way

    decoded = html.unescape(f"&{name};")
    return match.group(0) if decoded == f"&{name};" else decoded
