"""The Wan2.2 A14B expert switch: the high-noise expert first, the low-noise expert after it,
switched at a sigma boundary (the official rule) or at a step index (ComfyUI's KSamplerAdvanced
split, the Lightning recipe's "4 steps split at 2").

Official rule (``wan/configs/wan_{t2v,i2v}_A14B.py``, ``wan/text2video.py``/``image2video.py``):
the high-noise expert runs while the timestep ``t >= boundary * 1000`` (the official code compares
the integer timestep ``t.item() >= boundary``); boundary 0.875 for T2V, 0.900 for I2V; each expert
has its own CFG scale (``sample_guide_scale = (low, high)``: T2V (3.0, 4.0), I2V (3.5, 3.5)), so a
run builds one guidance layer per expert and switches between them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import WanInputError
from .schedules import NUM_TRAIN_TIMESTEPS
from .step import Step

BOUNDARY_T2V = 0.875
BOUNDARY_I2V = 0.900


def check_switch(steps: int, switch_step: int | None, boundary: float | None) -> None:
    """WanInputError unless at most one of ``switch_step`` (1..steps-1: both experts run at least
    one step) and ``boundary`` (a fraction of the schedule in (0, 1)) is given."""
    if switch_step is not None and boundary is not None:
        raise WanInputError(f"give the expert switch either as switch_step ({switch_step}) or as boundary "
                            f"({boundary}), not both")
    if switch_step is not None:
        if isinstance(switch_step, bool) or not isinstance(switch_step, int) or not 1 <= switch_step <= steps - 1:
            raise WanInputError(f"switch_step must be a step index in 1..{steps - 1} (steps of the run: {steps}) "
                                f"so that both experts run, got {switch_step!r}")
    if boundary is not None and not 0.0 < float(boundary) < 1.0:
        raise WanInputError(f"expert boundary must be a fraction of the schedule in (0, 1), got {boundary!r}")


def uses_high_noise_expert(sigma: torch.Tensor | float, boundary: float) -> bool:
    """True while ``t = sigma * 1000 >= boundary * 1000``, the official Wan2.2 rule (for an integer
    threshold, comparing the truncated integer timestep as the official code does is the same)."""
    return float(sigma) * NUM_TRAIN_TIMESTEPS >= boundary * NUM_TRAIN_TIMESTEPS


def switch_index(sigmas: torch.Tensor, boundary: float) -> int:
    """How many steps of the grid ``sigmas`` (steps + 1 values) the high-noise expert runs."""
    return sum(uses_high_noise_expert(s, boundary) for s in sigmas[:-1])


def make_expert_switch(
    high: Callable[..., torch.Tensor],
    low: Callable[..., torch.Tensor],
    boundary: float | None = None,
    switch_step: int | None = None,
) -> Callable[..., torch.Tensor]:
    """A denoiser calling ``high`` at noise levels with ``t >= boundary * 1000`` (or at step indices
    below ``switch_step``), ``low`` after; exactly one of the two is given."""
    if (boundary is None) == (switch_step is None):
        raise WanInputError("the expert switch needs exactly one of boundary and switch_step")
    if boundary is not None and not 0.0 <= boundary <= 1.0:
        raise WanInputError(f"expert boundary must be a fraction of the schedule in [0, 1], got {boundary!r}")

    def denoise(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        if switch_step is not None:
            first = step.index < switch_step
        else:
            first = uses_high_noise_expert(step.sigma, boundary)
        return (high if first else low)(x, step, *extra)

    return denoise


def offset_steps(denoise: Callable[..., torch.Tensor], offset: int, total: int) -> Callable[..., torch.Tensor]:
    """``denoise`` seen by a sampler that runs only steps ``offset..`` of a ``total``-step run (the
    low-noise expert's own sampler after a split): each Step is renumbered to its place in the run,
    so per-step options (cfg lists, the step-index switch, step cache, percents) see one run."""

    def renumbered(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        return denoise(x, Step(step.index + offset, total, step.sigma, step.timestep), *extra)

    return renumbered
