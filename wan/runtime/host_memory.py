"""Giving host memory back to the system once models are gone.

Freed memory does not leave the process by itself: torch keeps freed pinned (page-locked) blocks,
block swap's host copies among them, in its caching host allocator for reuse, and glibc keeps freed
heap pages below its trim threshold; both count in the process's RSS. ``release_host_memory`` hands
both back. It runs after an unload: the Wan Unload Models node, and (``release_soon``) whenever a
cached model is garbage-collected, as after ComfyUI's POST /free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import threading

import torch

_lock = threading.Lock()
_timer: threading.Timer | None = None


def release_host_memory(collect: bool = True) -> None:
    """Collect garbage (``collect``), then empty torch's pinned host cache (where CUDA is up: only
    then can it hold anything) and trim glibc's heap."""
    if collect:
        gc.collect()
    empty = getattr(torch._C, "_host_emptyCache", None)
    if empty is not None and torch.cuda.is_initialized():
        empty()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def release_soon(delay: float = 0.5) -> threading.Timer:
    """``release_host_memory`` on a timer thread, for a weakref callback: a dying object's tensors
    are freed only after its callbacks have returned (in a garbage collection too), so releasing
    from the callback itself would find them still held. Several deaths share one pending timer."""
    global _timer
    with _lock:
        if _timer is None or not _timer.is_alive():
            _timer = threading.Timer(delay, _release_pending)
            _timer.daemon = True
            _timer.start()
        return _timer


def _release_pending() -> None:
    global _timer
    with _lock:
        _timer = None
    release_host_memory(collect=False)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (other C libraries, other systems)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
