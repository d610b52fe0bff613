"""A pipeline of the example project: hollow quotes are dropped, not exported.

A quote scraped without its text or author means the page's markup is not what
the spider expects. Dropping it with a reason puts the count in the crawl's
summary (``items dropped``), where a change in the site shows at once, instead
of a column of empty cells in the export.
"""

from __future__ import annotations

from typing import Any

from crawler import DropItem, Spider


class DropHollowQuotes:
    """Drops quote items that lack a text or an author; passes everything else on."""

    def process_item(self, item: Any, spider: Spider) -> Any:
        if item.get("type") == "quote" and not (item.get("text") and item.get("author")):
            raise DropItem("quote without text or author")
        return item
