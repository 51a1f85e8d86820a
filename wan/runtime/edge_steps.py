"""SDPA on the first and last steps of a run when the model's attention is an 8-bit kernel.

8-bit attention (comfy-kitchen's INT8, SageAttention) rounds q and k to 8 bits. The first steps
lay out the composition and the last ones the fine detail, where that rounding shows most, so
xDiT and LightX2V run those steps with full-precision attention. ``RunOptions(sdpa_edge_steps=n)``
does the same: the first ``n`` and the last ``n`` steps of each run use PyTorch's SDPA, the steps
between keep the model's kernel. A model whose attention is already SDPA (or another full
precision kernel) is left as it is.

For one run (``use_sdpa_edges``) each attention module's kernel is put behind a switch that the
run's DiT forward (the function it yields wraps it, as Enhance-A-Video's does) sets from the
sampler's ``Step``; the model's kernels are put back afterwards. Under torch.compile the switch is
a Python attribute the compiled blocks guard on, so the SDPA steps get their own compilation (not
yet tried).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ..models.dit.attention import sdpa
from ..sampling.step import Step

# kernel modes that run attention in 8 bits ("auto" resolves to one of them where the GPU has it,
# else to SDPA, for which the switch changes nothing)
EIGHT_BIT_MODES = ("int8", "sage", "auto")


def is_eight_bit(kernel) -> bool:
    base = getattr(kernel, "__wrapped__", kernel)  # under the query-chunk wrapper
    return getattr(base, "mode", None) in EIGHT_BIT_MODES


def is_edge(step: Step, n: int) -> bool:
    return step.index < n or step.index >= step.total - n


class _Switch:
    """The module's kernel, or SDPA while ``edge`` is set."""

    def __init__(self, inner):
        self.inner = inner
        self.edge = False

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return sdpa(q, k, v) if self.edge else self.inner(q, k, v)


def _unchanged(forward):
    return forward


@contextlib.contextmanager
def use_sdpa_edges(dit, n: int):
    """Within the block, the DiT forwards that go through the yielded ``wrap(forward) -> forward``
    (``forward(step, x, t, context, **kw)``) run SDPA attention on the first and last ``n`` steps
    when ``dit``'s attention is 8-bit. ``n`` 0 or a full-precision kernel: nothing changes."""
    modules = [m for m in dit.modules() if hasattr(m, "kernel") and is_eight_bit(m.kernel)] if n > 0 else []
    if not modules:
        yield _unchanged
        return
    switches = {}
    for m in modules:
        switches[m] = _Switch(m.kernel)
        m.kernel = switches[m]

    def wrap(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def edged(step: Step, x, t, context, **kw):
            edge = is_edge(step, n)
            for s in switches.values():
                s.edge = edge
            return forward(step, x, t, context, **kw)
        return edged

    try:
        yield wrap
    finally:
        for m, s in switches.items():
            m.kernel = s.inner
