"""``crawl status|stop|export REDIS_URL``: the tools that look after a shared crawl."""

from __future__ import annotations

import argparse
import sys

__all__ = ["run_shared_tool"]

EXIT_FAILED = 1


def run_shared_tool(args: argparse.Namespace) -> int:
    from ..distributed import RedisError
    from ..distributed._admin import crawl_status, export_items, stop_crawl

    try:
        if args.tool == "status":
            print(crawl_status(args.url, args.spider, args.crawl_id))
        elif args.tool == "stop":
            print(stop_crawl(args.url, args.spider, args.crawl_id))
        else:
            path = args.append or args.overwrite
            result = export_items(
                args.url,
                args.spider,
                args.crawl_id,
                path,
                append=args.append is not None,
                follow=args.follow,
                trim=args.trim,
            )
            print(f"{result.written} items exported to {path} ({result.total} bytes)")
    except (RedisError, ValueError, OSError) as exc:
        print(f"crawl {args.tool}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0
