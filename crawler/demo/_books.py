"""The demo site's bookshop, under /books/: a catalogue to practise crawling rules on.

Its paths and markup follow the public sandbox books.toscrape.com
(``article.product_pod``, ``p.star-rating Three``, ``li.next``, the product
table with its UPC, ``ul.breadcrumb``, relative links climbing with ``../``),
so a spider written against it also scrapes that site. The books are made up
from the word lists below by index arithmetic, not by a random generator, so
every run on every machine serves the same 50 books and tests can count them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from html import escape

__all__ = [
    "BOOKS",
    "BOOKS_BY_ID",
    "BOOKS_PAGE_SIZE",
    "CATEGORIES",
    "Book",
    "Category",
    "books_page",
]

BOOKS_PAGE_SIZE = 10
SITE_NAME = "Demo Books"


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    name: str
    slug: str  # "travel_2": the folder of its listing, as on books.toscrape.com

    @property
    def path(self) -> str:
        """Its first listing page, relative to /books/."""
        return f"catalogue/category/books/{self.slug}/index.html"


@dataclass(frozen=True, slots=True)
class Book:
    id: int
    title: str
    slug: str  # "the-quiet-harbour_7"
    category: Category
    price: str  # "£23.88", as the page shows it
    rating: str  # One .. Five, the second class of p.star-rating
    stock: int  # 0: out of stock
    upc: str
    description: str

    @property
    def path(self) -> str:
        """Its product page, relative to /books/."""
        return f"catalogue/{self.slug}/index.html"

    @property
    def image(self) -> str:
        """Its cover image (a .jpg, which link extractors skip by default), relative to /books/."""
        return f"media/cache/{self.upc[:2]}/{self.upc}.jpg"

    @property
    def availability(self) -> str:
        return f"In stock ({self.stock} available)" if self.stock else "Out of stock"


# name, how many books it holds: two categories fill two listing pages, three fit on one.
_CATEGORY_SIZES = (
    ("Travel", 14),
    ("Mystery", 12),
    ("Poetry", 11),
    ("History", 7),
    ("Science Fiction", 6),
)
_ADJECTIVES = (
    "Quiet",
    "Borrowed",
    "Northern",
    "Paper",
    "Salt & Iron",
    "Midnight",
    "Café",
    "Hollow",
    "Patient",
    "Last",
)
_NOUNS = ("Harbour", "Lanterns", "Almanac", "Orchard", "Engine")
_RATINGS = ("One", "Two", "Three", "Four", "Five")
_OPENINGS = (
    "A slow, generous book about",
    "An unhurried account of",
    "A sharp little novel about",
    "A field guide, of sorts, to",
    "A patchwork of letters about",
)
_SUBJECTS = (
    "the towns that ferries forget",
    "a family that keeps every map it was ever given",
    "the last lamplighter of a coastal road",
    "a library that lends out weather",
    "two rivals who share one telescope",
    "a summer spent cataloguing bells",
    "a cook who only writes recipes in the margins",
)


def _slug(text: str) -> str:
    """``The Café Almanac`` gives ``the-cafe-almanac``: accents dropped, not the letters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _categories() -> tuple[Category, ...]:
    return tuple(
        Category(number + 2, name, f"{_slug(name)}_{number + 2}")
        for number, (name, _) in enumerate(_CATEGORY_SIZES)
    )


def _books() -> tuple[Book, ...]:
    categories = _categories()
    # Which category the book at each position of the catalogue belongs to: blocks of
    # the sizes above, visited in a stride order (7 is prime to 50) so that the
    # catalogue's pages mix categories.
    sizes = (size for _, size in _CATEGORY_SIZES)
    blocks = [cat for cat, size in zip(categories, sizes, strict=True) for _ in range(size)]
    total = len(blocks)
    books = []
    for index in range(total):
        title = f"The {_ADJECTIVES[index % 10]} {_NOUNS[index // 10]}"
        book_id = index + 1
        upc = hashlib.sha256(f"demo-book-{book_id}".encode()).hexdigest()[:16]
        description = (
            f"{_OPENINGS[index % 5]} {_SUBJECTS[index % 7]}. "
            f"Book {book_id} of the demo shop; every word of it is invented."
        )
        books.append(
            Book(
                id=book_id,
                title=title,
                slug=f"{_slug(title)}_{book_id}",
                category=blocks[(index * 7) % total],
                price=f"£{10 + (index * 373) % 4000 / 100:.2f}",
                rating=_RATINGS[(index * 3) % 5],
                stock=(index * 13) % 23,
                upc=upc,
                description=description,
            )
        )
    return tuple(books)


CATEGORIES: tuple[Category, ...] = _categories()
BOOKS: tuple[Book, ...] = _books()
BOOKS_BY_ID = {book.id: book for book in BOOKS}
_BOOKS_BY_SLUG = {book.slug: book for book in BOOKS}
_CATEGORIES_BY_SLUG = {cat.slug: cat for cat in CATEGORIES}
_IN_CATEGORY = {cat.slug: tuple(b for b in BOOKS if b.category == cat) for cat in CATEGORIES}


# --- pages -------------------------------------------------------------------------


def _layout(title: str, up: str, content: str) -> str:
    """``up`` leads from the page's folder back to /books/ ("", "../", "../../"...)."""
    sidebar = "".join(
        f'\n        <li><a href="{up}{cat.path}">{escape(cat.name)}</a></li>' for cat in CATEGORIES
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>{escape(title)} | {SITE_NAME}</title>
</head>
<body>
<header class="header container-fluid">
  <div class="page_inner"><div class="row">
    <div class="col-sm-8 h1"><a href="{up}index.html">{SITE_NAME}</a></div>
  </div></div>
</header>
<div class="container-fluid page"><div class="page_inner"><div class="row">
  <aside class="sidebar col-sm-4 col-md-3">
    <div class="side_categories">
      <ul class="nav nav-list">
        <li><a href="{up}index.html">Books</a>
        <ul>{sidebar}
        </ul></li>
      </ul>
    </div>
  </aside>
  <div class="col-sm-8 col-md-9">
{content}
  </div>
</div></div></div>
<footer class="footer">
  <p>An offline bookshop bundled with the crawler; every book is invented.
  <a href="/">Back to the demo quotes</a></p>
</footer>
</body>
</html>
"""


def _pod(book: Book, up: str) -> str:
    title = escape(book.title)
    stock = "In stock" if book.stock else "Out of stock"
    kind = "instock" if book.stock else "outofstock"
    return f"""      <li class="col-xs-6 col-sm-4 col-md-3 col-lg-3">
        <article class="product_pod">
          <div class="image_container"><a href="{up}{book.path}"><img src="{up}{book.image}" alt="{title}" class="thumbnail"></a></div>
          <p class="star-rating {book.rating}"></p>
          <h3><a href="{up}{book.path}" title="{title}">{title}</a></h3>
          <div class="product_price">
            <p class="price_color">{escape(book.price)}</p>
            <p class="{kind} availability">{stock}</p>
          </div>
        </article>
      </li>
"""  # noqa: E501


def _pager(page: int, pages: int, link: str) -> str:
    """``link`` is the listing's page-N.html path with N as ``{}``, relative to the page."""
    items = []
    if page > 1:
        items.append(f'<li class="previous"><a href="{link.format(page - 1)}">previous</a></li>')
    items.append(f'<li class="current">Page {page} of {pages}</li>')
    if page < pages:
        items.append(f'<li class="next"><a href="{link.format(page + 1)}">next</a></li>')
    return f'    <div><ul class="pager">{"".join(items)}</ul></div>\n'


def _listing(heading: str, books: tuple[Book, ...], page: int, up: str, link: str) -> str | None:
    pages = max(1, -(-len(books) // BOOKS_PAGE_SIZE))
    if not 1 <= page <= pages:
        return None
    start = (page - 1) * BOOKS_PAGE_SIZE
    shown = books[start : start + BOOKS_PAGE_SIZE]
    pods = "".join(_pod(book, up) for book in shown)
    content = (
        f'    <div class="page-header action"><h1>{escape(heading)}</h1></div>\n'
        f'    <form class="form-horizontal"><strong>{len(books)}</strong> results - showing '
        f"<strong>{start + 1}</strong> to <strong>{start + len(shown)}</strong>.</form>\n"
        f'    <section><ol class="row">\n{pods}    </ol>\n{_pager(page, pages, link)}'
        "    </section>"
    )
    return _layout(heading if page == 1 else f"{heading}, page {page}", up, content)


def _product(book: Book) -> str:
    up = "../../"
    title = escape(book.title)
    price = escape(book.price)
    kind = "instock" if book.stock else "outofstock"
    rows = (
        ("UPC", book.upc),
        ("Product Type", "Books"),
        ("Price (excl. tax)", book.price),
        ("Price (incl. tax)", book.price),
        ("Tax", "£0.00"),
        ("Availability", book.availability),
        ("Number of reviews", "0"),
    )
    table = "".join(f"\n      <tr><th>{k}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    content = f"""    <ul class="breadcrumb">
      <li><a href="{up}index.html">Home</a></li>
      <li><a href="{up}{book.category.path}">{escape(book.category.name)}</a></li>
      <li class="active">{title}</li>
    </ul>
    <article class="product_page">
      <div class="row">
        <div class="col-sm-6"><div id="product_gallery" class="thumbnail">
          <div class="item active"><img src="{up}{book.image}" alt="{title}"></div>
          <a class="full-image" href="{up}{book.image}">View the full-size cover</a>
        </div></div>
        <div class="col-sm-6 product_main">
          <h1>{title}</h1>
          <p class="price_color">{price}</p>
          <p class="{kind} availability">{escape(book.availability)}</p>
          <p class="star-rating {book.rating}"></p>
        </div>
      </div>
      <div id="product_description" class="sub-header"><h2>Product Description</h2></div>
      <p>{escape(book.description)}</p>
      <div class="sub-header"><h2>Product Information</h2></div>
      <table class="table table-striped">{table}
      </table>
    </article>"""
    return _layout(book.title, up, content)


def _page_number(name: str) -> int | None:
    """``page-3.html`` gives 3; only the canonical spelling counts."""
    match = re.fullmatch(r"page-([1-9][0-9]*)\.html", name)
    return int(match.group(1)) if match else None


@cache
def books_page(rest: tuple[str, ...]) -> str | None:
    """The page at /books/ followed by the path segments ``rest``, or None (404).

    Pages are deterministic, so each is rendered once per process.
    """
    match rest:
        case () | ("index.html",):
            return _listing("All books", BOOKS, 1, "", "catalogue/page-{}.html")
        case ("catalogue", name):
            page = _page_number(name)
            if page is None:
                return None
            return _listing("All books", BOOKS, page, "../", "page-{}.html")
        case ("catalogue", "category", "books", slug, name) if slug in _CATEGORIES_BY_SLUG:
            page = 1 if name == "index.html" else _page_number(name)
            if page is None:
                return None
            category = _CATEGORIES_BY_SLUG[slug]
            books = _IN_CATEGORY[slug]
            return _listing(category.name, books, page, "../../../../", "page-{}.html")
        case ("catalogue", slug, "index.html") if slug in _BOOKS_BY_SLUG:
            return _product(_BOOKS_BY_SLUG[slug])
    return None
