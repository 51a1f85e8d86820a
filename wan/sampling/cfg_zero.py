"""CFG-Zero* (Fan et al. 2025, arXiv 2503.18886): classifier-free guidance with an optimized scale
for the unconditional prediction, and optionally the first steps zeroed.

The scale is ComfyUI's ``CFGZeroStar`` node (comfy_extras/nodes_cfg.py), a post-CFG function on
denoised (x0) predictions: ``alpha = <x - x0_c, x - x0_u> / (|x - x0_u|^2 + 1e-8)`` per sample, then
``out = cfg_result + x0_u * (alpha - 1) + cfg * x0_u * (1 - alpha)``. ComfyUI's node has no
zero-init; the paper's ("zero_init_steps") sets the model output of the first steps to zero
velocity, i.e. x0 = x: the sample is left as it is. ``zero_init_steps=0`` (the default) is
ComfyUI's node exactly. At cfg 1 ComfyUI runs no unconditional pass and the scale is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import WanInputError
from ..finite import check_fields


@dataclass(frozen=True)
class CFGZeroStar:
    """zero_init_steps: how many steps at the start of the run return x0 = x (0: none)."""

    zero_init_steps: int = 0

    def __post_init__(self):
        check_fields(self, "CFG-Zero*")
        if isinstance(self.zero_init_steps, bool) or not isinstance(self.zero_init_steps, int) \
                or self.zero_init_steps < 0:
            raise WanInputError(f"CFG-Zero* zero_init_steps must be an integer >= 0, got {self.zero_init_steps!r}")


def optimized_scale(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Per sample <positive, negative> / (|negative|^2 + 1e-8), shaped to broadcast over a sample."""
    p, n = positive.reshape(positive.shape[0], -1), negative.reshape(negative.shape[0], -1)
    scale = (p * n).sum(dim=1, keepdim=True) / ((n * n).sum(dim=1, keepdim=True) + 1e-8)
    return scale.reshape([positive.shape[0]] + [1] * (positive.ndim - 1))


def cfg_zero_star(x: torch.Tensor, x0_cond: torch.Tensor, x0_uncond: torch.Tensor, cfg_result: torch.Tensor,
                  cfg: float) -> torch.Tensor:
    """The CFG result ``cfg_result`` (x0) corrected by the optimized scale of ``x0_uncond``."""
    alpha = optimized_scale(x - x0_cond, x - x0_uncond)
    return cfg_result + x0_uncond * (alpha - 1.0) + cfg * x0_uncond * (1.0 - alpha)
