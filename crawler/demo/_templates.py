"""HTML for the demo site, as plain f-strings.

The markup copies the class names and nesting of the public scraping sandbox
quotes.toscrape.com (``div.quote``, ``span.text``, ``small.author``,
``li.next``, ``span.author-born-date``...) so that one spider, written with
the same selectors, scrapes either site. Every piece of text goes through
``html.escape``: the content includes ``&`` and non-ASCII on purpose.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from ._content import QUOTES_BY_TAG, TOP_TAGS, Author, Quote

__all__ = [
    "archive_page",
    "author_page",
    "error_page",
    "login_page",
    "message_page",
    "private_page",
    "quotes_page",
]

SITE_NAME = "Demo Quotes"

_STYLE = """body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em;color:#222}
.quote{border:1px solid #ccc;border-radius:4px;padding:.6em;margin:.6em 0}
.text{display:block;font-size:1.1em}.tag{margin-right:.4em}
.pager{list-style:none;padding:0;display:flex;justify-content:space-between}
.error{color:#a00}.footer{margin-top:2em;font-size:.85em;color:#666}"""


def _account(user: str | None) -> str:
    if user is None:
        return '<a href="/login">Login</a>'
    return (
        f'Logged in as <span class="account-name">{escape(user)}</span> '
        '| <a href="/private/">Favourites</a> | <a href="/logout">Logout</a>'
    )


def _layout(title: str, content: str, user: str | None) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>{escape(title)} - {SITE_NAME}</title>
<style>{_STYLE}</style>
</head>
<body>
<div class="container">
  <div class="row header-box">
    <div class="col-md-8"><h1><a href="/">{SITE_NAME}</a></h1></div>
    <div class="col-md-4"><p>{_account(user)}</p></div>
  </div>
{content}
</div>
<footer class="footer">
  <p>An offline demo site bundled with the crawler. Every quote and author is invented.</p>
  <ul class="site-links">
    <li><a href="/books/">Books to scrape: the demo bookshop</a></li>
    <li><a href="/private-archive/">Private archive (disallowed by robots.txt)</a></li>
    <li><a href="/flaky/">A flaky page</a></li>
    <li><a href="/slow/">A slow page</a></li>
    <li><a href="/missing/">A page that no longer exists</a></li>
  </ul>
</footer>
</body>
</html>
"""


def _quote(quote: Quote, favourite: bool) -> str:
    author = quote.author
    tags = "".join(
        f'\n      <a class="tag" href="/tag/{escape(tag)}/page/1/">{escape(tag)}</a>'
        for tag in quote.tags
    )
    mark = '\n    <span class="favourite">&#9733; favourite</span>' if favourite else ""
    return f"""  <div class="quote">
    <span class="text">{escape(quote.text)}</span>
    <span>by <small class="author">{escape(author.name)}</small>
    <a href="/author/{escape(author.slug)}">(about)</a>
    </span>
    <div class="tags">
      Tags:
      <meta class="keywords" content="{escape(",".join(quote.tags))}">{tags}
    </div>{mark}
  </div>
"""


def _pager(prefix: str, page: int, pages: int) -> str:
    items = []
    if page > 1:
        items.append(
            f'<li class="previous"><a href="{prefix}{page - 1}/">'
            '<span aria-hidden="true">&larr;</span> Previous</a></li>'
        )
    if page < pages:
        items.append(
            f'<li class="next"><a href="{prefix}{page + 1}/">'
            'Next <span aria-hidden="true">&rarr;</span></a></li>'
        )
    return f'  <nav>\n    <ul class="pager">\n      {"".join(items)}\n    </ul>\n  </nav>\n'


def _top_tags() -> str:
    items = "".join(
        f'\n    <span class="tag-item"><a class="tag" '
        f'style="font-size: {10 + 2 * len(QUOTES_BY_TAG[tag])}px" '
        f'href="/tag/{escape(tag)}/">{escape(tag)}</a></span>'
        for tag in TOP_TAGS
    )
    return f'<div class="col-md-4 tags-box">\n    <h2>Top Ten tags</h2>{items}\n  </div>'


_TOP_TAGS_HTML = _top_tags()


def quotes_page(
    quotes: Iterable[Quote],
    *,
    page: int,
    pages: int,
    tag: str | None,
    user: str | None,
    favourites: frozenset[int],
) -> str:
    """One page of quotes: the home pages, or a tag's pages when ``tag`` is set."""
    marked = favourites if user is not None else frozenset()
    body = "".join(_quote(q, q.id in marked) for q in quotes)
    if tag is None:
        heading = ""
        prefix = "/page/"
        title = f"Quotes, page {page}"
    else:
        safe = escape(tag)
        heading = f'  <h3>Viewing tag: <a href="/tag/{safe}/page/1/">{safe}</a></h3>\n'
        prefix = f"/tag/{safe}/page/"
        title = f"Quotes tagged {tag}, page {page}"
    content = (
        f'<div class="row">\n<div class="col-md-8">\n{heading}{body}'
        f"{_pager(prefix, page, pages)}</div>\n  {_TOP_TAGS_HTML}\n</div>"
    )
    return _layout(title, content, user)


def author_page(author: Author, user: str | None) -> str:
    content = f"""<div class="author-details">
  <h3 class="author-title">{escape(author.name)}</h3>
  <p><strong>Born:</strong> <span class="author-born-date">{escape(author.born_date)}</span>
  <span class="author-born-location">{escape(author.born_location)}</span></p>
  <strong>Description:</strong>
  <div class="author-description">
    {escape(author.description)}
  </div>
</div>"""
    return _layout(author.name, content, user)


def login_page(csrf_token: str, error: str | None, user: str | None) -> str:
    problem = f'\n    <p class="error">{escape(error)}</p>' if error else ""
    content = f"""<div class="col-md-4">
  <form action="/login" method="post" accept-charset="utf-8">
    <input type="hidden" name="csrf_token" value="{escape(csrf_token)}">{problem}
    <div class="form-group">
      <label for="username">Username</label>
      <input type="text" class="form-control" id="username" name="username">
    </div>
    <div class="form-group">
      <label for="password">Password</label>
      <input type="password" class="form-control" id="password" name="password">
    </div>
    <input type="submit" value="Login" class="btn btn-primary">
  </form>
  <p class="hint">Demo account: username <code>demo</code>, password <code>demo</code>.</p>
</div>"""
    return _layout("Login", content, user)


def private_page(quotes: Iterable[Quote], user: str) -> str:
    body = "".join(_quote(q, True) for q in quotes)
    content = f'<div class="private">\n  <h2>Favourite quotes of {escape(user)}</h2>\n{body}</div>'
    return _layout("Favourite quotes", content, user)


def archive_page(user: str | None) -> str:
    content = (
        '<div class="archive">\n  <h2>Private archive</h2>\n'
        '  <p class="archive-note">robots.txt disallows this page: a crawler that obeys '
        "robots.txt never fetches it.</p>\n</div>"
    )
    return _layout("Private archive", content, user)


def message_page(title: str, message: str, user: str | None) -> str:
    content = (
        f'<div class="message">\n  <h2>{escape(title)}</h2>\n  <p>{escape(message)}</p>\n</div>'
    )
    return _layout(title, content, user)


def error_page(status: int, reason: str, message: str, user: str | None) -> str:
    content = (
        f'<div class="error-page">\n  <h2>{status} {escape(reason)}</h2>\n'
        f'  <p class="error">{escape(message)}</p>\n</div>'
    )
    return _layout(f"{status} {reason}", content, user)
