"""The crawl keeps freed memory at the top of glibc's heap for the next page."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Allocates 2 MiB, frees it, and prints how much of the heap glibc kept (mallinfo2's
# arena: the bytes the main heap holds from the kernel), with or without the setting.
PROBE = """
import ctypes, sys
from crawler._heap import keep_heap_top

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_heap_top()
blocks = [libc.malloc(64 * 1024) for _ in range(32)]  # heap blocks, below mmap's size
before = libc.mallinfo2().arena
for block in reversed(blocks):
    libc.free(block)
print(before - libc.mallinfo2().arena)
"""


def _given_back(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_memory_freed_at_the_top_of_the_heap_stays_for_the_next_page() -> None:
    # glibc alone trims the 2 MiB freed at the heap's top back to the kernel...
    assert _given_back("default") >= 1024 * 1024
    # ...which the crawl's setting keeps, to be used again without page faults.
    assert _given_back("keep") == 0
