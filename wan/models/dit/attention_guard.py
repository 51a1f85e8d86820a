"""The guard every optional attention kernel runs behind: a call the kernel cannot take (head dim,
dtype, device) goes to SDPA, and a kernel whose first output is not finite from finite inputs (or
whose first call fails) is replaced by SDPA for good, each said once through ``wan.notices``.

Only the first call is checked (one device sync), so a steady run pays nothing; under
torch.compile that check runs outside the graph once, and the compiled code after it calls the
kernel directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...notices import notify
from ...runtime.cancel import Cancelled
from .attention import Kernel, sdpa_whole

# exceptions that are the job's, not the kernel's: never turned into a fall back
_NOT_THE_KERNEL = (Cancelled, torch.OutOfMemoryError, KeyboardInterrupt)


class GuardedKernel:
    """``kernel`` of attention mode ``mode``; ``takes(q, k, v)`` says why it cannot take a call
    (None: it can)."""

    def __init__(self, mode: str, kernel: Kernel, takes: Callable[..., str | None]):
        self.mode = mode
        self.kernel = kernel
        self.takes = takes
        self.checked = False  # the first call's output was looked at
        self.broken: str | None = None  # why SDPA replaced the kernel for good
        self._said: set[str] = set()

    def _say(self, why: str, what: str) -> None:
        if why not in self._said:
            self._said.add(why)
            notify(f"attention {self.mode}: {why}; {what}", stacklevel=3)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.broken is not None:
            return sdpa_whole(q, k, v)
        why = self.takes(q, k, v)
        if why is not None:
            self._say(f"cannot take {why}", "those calls use sdpa")
            return sdpa_whole(q, k, v)
        if not self.checked:
            return self._first(q, k, v)
        return self.kernel(q, k, v)

    @torch.compiler.disable
    def _first(self, q, k, v) -> torch.Tensor:
        self.checked = True
        try:
            out = self.kernel(q, k, v)
        except _NOT_THE_KERNEL:
            self.checked = False
            raise
        except Exception as e:  # noqa: BLE001 - any failure of an optional kernel: SDPA takes over
            return self._replace(f"failed ({type(e).__name__}: {e})", q, k, v)
        if bool(torch.isfinite(out).all()):
            return out
        if not all(bool(torch.isfinite(t).all()) for t in (q, k, v)):
            return out  # the inputs are at fault, not the kernel: the job's own NaN check reports it
        return self._replace("gave non-finite values from finite inputs", q, k, v)

    def _replace(self, why: str, q, k, v) -> torch.Tensor:
        self.broken = why
        self._say(why, "using sdpa from now on")
        return sdpa_whole(q, k, v)
