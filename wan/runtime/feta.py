"""Enhance-A-Video (FETA; Luo et al. 2025, arXiv 2502.07508): strengthen cross-frame coherence by
scaling each self-attention's output by a score computed from its own queries and keys.

For every spatial position and head, a temporal attention over the latent frames is formed from
the rotated q and k (softmax(q k^T / sqrt(D)) over frames); the score is the mean of its
off-diagonal entries (attention paid to OTHER frames), averaged over positions, heads and batch,
times (frames + weight), and never below 1. The self-attention output (after its output
projection) is multiplied by that scalar, as the reference implementation and WanVideoWrapper do.

Hooked from outside: the self-attention modules get a kernel that wraps their current
kernel and records the score, and a forward hook multiplies the module's output by it; ``embed``
is wrapped to learn the token grid (frames) and the step. ``weight == 0`` means off (no hooks).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ..errors import WanInputError
from .steps import StepCounter


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


class _Feta:
    def __init__(self, dit, args: FetaArgs, total_steps: int | None):
        self.dit, self.args, self.total_steps = dit, args, total_steps
        self.frames = 1
        self.steps = StepCounter()
        self.pending: torch.Tensor | None = None
        self._hooks, self._modes = [], []

    @property
    def active(self) -> bool:
        if not self.total_steps:
            return True
        pct = self.steps.step / self.total_steps
        return self.args.start_percent <= pct <= self.args.end_percent

    def embed(self, x, t, *args, **kwargs):
        self.steps.see(t)
        state = type(self.dit).embed(self.dit, x, t, *args, **kwargs)
        self.frames = state.grid[0]
        return state

    def _backend(self, inner: str):
        @torch.compiler.disable
        def fn(q, k, v):
            if self.active:
                self.pending = feta_score(q, k, self.frames, self.args.weight)
            return inner(q, k, v)
        return fn

    def install(self) -> None:
        self.dit.embed = self.embed
        for block in self.dit.blocks:  # the main blocks only, as the reference does (not VACE's)
            module = block.self_attn
            self._modes.append((module, module.kernel))
            module.kernel = self._backend(module.kernel)
            self._hooks.append(module.register_forward_hook(self._scale))

    def _scale(self, module, args, output):
        score, self.pending = self.pending, None
        return output if score is None else output * score.to(output.dtype)

    def remove(self) -> None:
        del self.dit.embed
        for module, inner in self._modes:
            module.kernel = inner
        for h in self._hooks:
            h.remove()


@contextlib.contextmanager
def use_feta(dit, args: FetaArgs | None, total_steps: int | None = None):
    """Within the block, every self-attention of ``dit`` is enhanced as ``args`` says.

    ``total_steps`` (the sampler's steps) maps start/end percent to steps; without it the
    enhancement applies at every step. ``args`` None or weight 0: nothing changes.
    """
    if args is None or args.weight == 0:
        yield
        return
    if "embed" in vars(dit):
        raise WanInputError("Enhance-A-Video is already active on this model")
    feta = _Feta(dit, args, total_steps)
    feta.install()
    try:
        yield
    finally:
        feta.remove()
