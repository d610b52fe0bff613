"""Keep the memory a page frees at the top of the heap for the next page (glibc).

glibc hands the top of its heap back to the kernel as soon as more than 128 KiB
are free there, and takes it back with ``brk`` and a page fault per 4 KiB page
when asked again. A crawl frees each page's parsed tree when the page is done
and builds the next one's at once: where nothing long-lived grows above the
tree (a shared crawl keeps its queue in Redis), every page paid a trim and
about thirty page faults (283,000 minor faults for 10,000 pages of the
benchmark site, against 11,000 with the memory kept). Keeping up to
``TRIM_THRESHOLD`` free at the top ends that, and leaves the peak memory where
it was: the memory kept is memory the crawl has just used.

Setting one threshold by hand turns off glibc's own tuning of the other: the
size above which a block gets its own ``mmap`` is then fixed, so it is set too,
to what that tuning reaches for pages of a few megabytes.
"""

from __future__ import annotations

import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_heap_top"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 64 * 1024 * 1024
MMAP_THRESHOLD = 4 * 1024 * 1024


def keep_heap_top() -> bool:
    """Raise glibc's trim (and mmap) threshold for this process; False where the C
    library is not glibc (nothing is changed then)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # here: only a crawl needs it, not an import of the package

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
