"""Enhance-A-Video (FETA; Luo et al. 2025, arXiv 2502.07508): strengthen cross-frame coherence by
scaling each self-attention's output by a score computed from its own queries and keys.

For every spatial position and head, a temporal attention over the latent frames is formed from
the rotated q and k (softmax(q k^T / sqrt(D)) over frames); the score is the mean of its
off-diagonal entries (attention paid to OTHER frames), averaged over positions, heads and batch,
times (frames + weight), and never below 1. The self-attention output (after its output
projection) is multiplied by that scalar, as the reference implementation and WanVideoWrapper do.

For one run (``use_feta``): each main block's self-attention kernel (``self_attn.kernel``, a
``(q, k, v) -> out`` callable) is wrapped to record the score, and a forward hook multiplies the
module's output by it; both are removed afterwards. The DiT forward of the denoiser chain is
wrapped too (the function ``use_feta`` yields), which tells the kernels the sampler's ``Step`` (for
start/end percent) and the token grid's frames. ``weight == 0`` means off (nothing installed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import WanInputError
from ..finite import check_fields
from ..sampling.step import Step
from .attention_wrap import AttentionWrap, wrapped_for_run


@dataclass(frozen=True)
class FetaArgs:
    """Options of Enhance-A-Video (what the WanEnhanceVideoArgs node returns).

    weight: strength (0 disables); start_percent / end_percent: fraction of the sampling steps
    (step index / steps) during which it applies, bounds included.
    """

    weight: float = 2.0
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self):
        check_fields(self, "Enhance-A-Video")
        if self.weight < 0:
            raise WanInputError(f"Enhance-A-Video weight must be >= 0, got {self.weight}")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise WanInputError(f"Enhance-A-Video percents must satisfy 0 <= start ({self.start_percent}) "
                                f"<= end ({self.end_percent}) <= 1")


def feta_score(q: torch.Tensor, k: torch.Tensor, frames: int, weight: float) -> torch.Tensor:
    """q, k: [B, F*S, H, D] rotated queries/keys, frames slowest -> 0-dim fp32 score (>= 1)."""
    b, l, h, d = q.shape
    if frames < 2 or l % frames:
        return q.new_ones((), dtype=torch.float32)
    s = l // frames
    qt = q.float().view(b, frames, s, h, d).permute(0, 2, 3, 1, 4)  # [B, S, H, F, D]
    kt = k.float().view(b, frames, s, h, d).permute(0, 2, 3, 1, 4)
    attn = torch.softmax((qt * d**-0.5) @ kt.transpose(-1, -2), dim=-1)  # [B, S, H, F, F]
    off_diag = attn.sum(dim=(-1, -2)) - attn.diagonal(dim1=-2, dim2=-1).sum(-1)
    mean = off_diag / (frames * frames - frames)
    return (mean.mean() * (frames + weight)).clamp(min=1.0)


class _Feta(AttentionWrap):
    name = "Enhance-A-Video"

    def __init__(self, dit, args: FetaArgs):
        super().__init__()
        self.dit, self.args = dit, args
        self.step: Step | None = None  # the step of the forward in progress (None: outside a run's chain)
        self.frames = 1
        self.pending: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        step = self.step
        return step is not None and self.args.start_percent <= step.fraction <= self.args.end_percent

    def wrap(self, forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """The DiT forward ``forward(step, x, t, context, **kw)`` with this run's step made known."""
        patch = self.dit.cfg.patch_size[0]

        def enhanced(step: Step, x, t, context, **kw):
            self.step, self.frames = step, -(-x.shape[2] // patch)  # frames of the (padded) token grid
            try:
                return forward(step, x, t, context, **kw)
            finally:
                self.step = None

        return enhanced

    def modules(self):
        return [block.self_attn for block in self.dit.blocks]  # the main blocks only, as the reference does

    def kernel_for(self, module, inner):
        def kernel(q, k, v):
            if self.active:
                self.pending = feta_score(q, k, self.frames, self.args.weight)
            return inner(q, k, v)
        return kernel

    def after(self, module, args, output):
        score, self.pending = self.pending, None
        return output if score is None else output * score.to(output.dtype)


@contextlib.contextmanager
def use_feta(dit, args: FetaArgs | None):
    """Within the block, every main self-attention of ``dit`` is enhanced as ``args`` says, in the
    forwards that go through the function it yields: ``wrap(forward) -> forward`` for DiT forwards
    ``forward(step, x, t, context, **kw)``. ``args`` None or weight 0: nothing changes."""
    with wrapped_for_run(None if args is None or args.weight == 0 else _Feta(dit, args)) as wrap:
        yield wrap
