"""The cancel hook of the work in progress: one callable, set by whoever runs a job (a ComfyUI node,
the command line, ``sample_video``'s ``cancel`` argument), polled by the long loops underneath it
(between DiT blocks, between attention chunks of a long sequence, between VAE chunks, tiles and
layers, between frames written), which know nothing of who asked.

A context variable rather than an argument threaded through every layer: a model's blocks, its
attention kernels and the VAE's decoder are called through wrappers (block swap, step cache,
Enhance-A-Video, tiling) whose signatures stay those of the model. It is per thread (and per
asyncio task), so two jobs in two threads each see their own hook.

``hook() -> bool``: True asks to stop (``check`` then raises ``Cancelled``); a hook may also raise
its own exception (ComfyUI's ``InterruptProcessingException``), which passes through unchanged.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch

from ..errors import WanError

CancelHook = Callable[[], bool]
Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

_hook: ContextVar[CancelHook | None] = ContextVar("wan_cancel_hook", default=None)


class Cancelled(WanError):
    """The job stopped because its cancel hook asked it to."""


@contextlib.contextmanager
def cancel_hook(hook: CancelHook | None) -> Iterator[None]:
    """Within the block, ``check`` polls ``hook`` (None: leaves the hook already set in place)."""
    if hook is None:
        yield
        return
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


@contextlib.contextmanager
def cancel_on_sigint() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) cancels the job at its next cancel point, as ComfyUI's
    cancel does (``Cancelled``: the output is not written); a second Ctrl-C interrupts at once. Only
    the main thread can take signals: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked = threading.Event()

    def on_sigint(signum, frame):
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with cancel_hook(asked.is_set):
            yield
    finally:
        signal.signal(signal.SIGINT, previous)


def current_hook() -> CancelHook | None:
    """The hook ``check`` polls now (None outside any ``cancel_hook`` block)."""
    return _hook.get()


def check(where: str) -> None:
    """Raise ``Cancelled`` (naming ``where``) if the current hook asks to stop; cheap without a hook."""
    hook = _hook.get()
    if hook is not None and hook():
        raise Cancelled(f"cancelled {where}")


# Score elements (queries x keys x heads) one attention call may cover before the hook is polled
# again: about 0.5 s of SDPA with head_dim 128 on two CPU cores, about 20 ms on an H100. Below the
# budget a call is never split, so the usual sizes run exactly as before.
CHUNK_SCORES_CPU = 1 << 26
CHUNK_SCORES_OTHER = 1 << 34


def query_chunk(q: torch.Tensor, k: torch.Tensor, axis: int, cpu_scores: int = CHUNK_SCORES_CPU) -> int:
    """Queries per attention call for q and k whose token axis is ``axis`` (q's length: one call)."""
    lq, lk = q.shape[axis], k.shape[axis]
    rows = q.numel() // q.shape[-1]  # batch x heads x queries
    budget = cpu_scores if q.device.type == "cpu" else CHUNK_SCORES_OTHER
    if rows * lk <= budget:
        return lq
    n = max(32, budget // (rows // lq * lk))
    # whole tiles of the kernels' own query blocking (32 / 256 rows on the CPU, 64 / 128 on GPUs),
    # so that each row is computed by the same instructions as in one call: results do not change
    return n - n % (256 if n >= 256 else 32)


def in_query_chunks(kernel: Kernel, axis: int = 1, cpu_scores: int = CHUNK_SCORES_CPU) -> Kernel:
    """``kernel(q, k, v)`` split into calls over slices of the queries (token axis ``axis``) when the
    sequence is long, polling the hook between them: each row of softmax attention depends on its own
    query only. Wrap a base kernel, under any per-run wrapper, which still sees the whole q and k."""

    def chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():  # a compiled block stays one graph; polled between blocks
            return kernel(q, k, v)
        n, lq = query_chunk(q, k, axis, cpu_scores), q.shape[axis]
        if n >= lq:
            return kernel(q, k, v)
        out = None
        for start in range(0, lq, n):
            check(f"in attention, at query {start} of {lq}")
            part = kernel(q.narrow(axis, start, min(n, lq - start)), k, v)
            if out is None:
                shape = list(part.shape)
                shape[axis] = lq
                out = part.new_empty(shape)
            out.narrow(axis, start, part.shape[axis]).copy_(part)
        return out

    chunked.__wrapped__ = kernel
    return chunked
