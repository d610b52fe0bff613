"""``python -m crawler.cli``: the ``crawl`` command."""

from ._main import main

raise SystemExit(main())
