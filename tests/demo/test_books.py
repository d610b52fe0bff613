"""The demo site's bookshop under /books/, over real HTTP."""

from __future__ import annotations

from collections import Counter

import trio

from crawler.demo import DemoApp
from crawler.demo._books import BOOKS, BOOKS_PAGE_SIZE, CATEGORIES
from crawler.http import Client
from tests.servers import serve_asgi


def test_the_catalogue_is_fixed_and_varied() -> None:
    assert len(BOOKS) == 50 and len({b.title for b in BOOKS}) == 50
    assert len({b.upc for b in BOOKS}) == 50 and len(CATEGORIES) == 5
    sizes = Counter(b.category.name for b in BOOKS)
    assert sorted(sizes.values()) == [6, 7, 11, 12, 14]
    assert set(Counter(b.rating for b in BOOKS)) == {"One", "Two", "Three", "Four", "Five"}
    assert any(b.stock == 0 for b in BOOKS) and any(b.stock for b in BOOKS)


async def test_listings_paginate_and_link_products_relatively() -> None:
    async with serve_asgi(DemoApp()) as url, Client() as client:
        with trio.fail_after(30):
            home = await client.get(url + "/")
            bare = await client.get(url + "/books")
            first = await client.get(url + "/books/")
            last = await client.get(url + "/books/catalogue/page-5.html")
            beyond = await client.get(url + "/books/catalogue/page-6.html")
            travel = CATEGORIES[0]
            travel_2 = await client.get(
                f"{url}/books/catalogue/category/books/{travel.slug}/page-2.html"
            )
    assert 'href="/books/"' in home.text
    # Its links are relative: /books redirects to /books/, where they resolve.
    assert bare.status_code == 200 and str(bare.url) == url + "/books/"
    assert first.status_code == 200
    assert first.text.count('<article class="product_pod">') == BOOKS_PAGE_SIZE
    assert f'href="{BOOKS[0].path}"' in first.text
    assert '<li class="next"><a href="catalogue/page-2.html">next</a>' in first.text
    assert last.text.count('<article class="product_pod">') == 10
    assert 'class="next"' not in last.text and 'href="page-4.html">previous' in last.text
    assert beyond.status_code == 404
    in_travel = [b for b in BOOKS if b.category == travel]
    assert travel_2.text.count("product_pod") == len(in_travel) - BOOKS_PAGE_SIZE
    assert f'href="../../../../{in_travel[-1].path}"' in travel_2.text


async def test_a_product_page_has_every_field_and_an_image_link() -> None:
    book = next(b for b in BOOKS if "&" in b.title)
    async with serve_asgi(DemoApp()) as url, Client() as client:
        with trio.fail_after(30):
            page = await client.get(f"{url}/books/{book.path}")
            image = await client.get(f"{url}/books/{book.image}")
    text = page.text
    assert page.status_code == 200
    assert f"<h1>{book.title.replace('&', '&amp;')}</h1>" in text
    assert f'<p class="star-rating {book.rating}">' in text
    assert f"<tr><th>UPC</th><td>{book.upc}</td></tr>" in text
    assert book.price in text and book.availability in text
    assert f'<li><a href="../../{book.category.path}">{book.category.name}</a></li>' in text
    assert f'href="../../{book.image}"' in text and book.image.endswith(".jpg")
    assert image.status_code == 404
