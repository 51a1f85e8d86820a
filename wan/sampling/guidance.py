"""Layers of the denoiser callable: classifier-free guidance and the Wan2.2 A14B expert switch.

A denoiser is ``fn(x, step, *extra) -> v`` (flow prediction, see ``samplers``; ``step`` is the
sampler's ``Step``); ``extra`` carries whatever the layer below needs, e.g. the window indices of
``context.make_context_denoiser``, and is passed through untouched. Layers compose in any order; the
sampler only ever calls ``fn(x, step)`` (through ``samplers.flow_to_x0``).

Wan2.2 A14B, from the official configs (``wan/configs/wan_{t2v,i2v}_A14B.py``): the high-noise
expert runs while the timestep ``t >= boundary * 1000`` (``wan/text2video.py`` and
``image2video.py`` compare the integer timestep ``t.item() >= boundary``), the low-noise expert
after it; boundary 0.875 for T2V, 0.900 for I2V; each expert has its own CFG scale
(``sample_guide_scale = (low, high)``: T2V (3.0, 4.0), I2V (3.5, 3.5)), so build one CFG layer per
expert and switch between them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import WanInputError
from .schedules import NUM_TRAIN_TIMESTEPS
from .step import Step

BOUNDARY_T2V = 0.875
BOUNDARY_I2V = 0.900


class _NotBatchable(Exception):
    pass


def _concat(a: Any, b: Any) -> Any:
    """Conditioning of two batches joined along dim 0: tensors concatenated, dicts and tuples/lists
    joined field by field, anything else (ints, strings, None) shared when equal."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype or a.device != b.device:
            raise _NotBatchable
        return torch.cat([a, b])
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            raise _NotBatchable
        return {k: _concat(a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b):
        if len(a) != len(b):
            raise _NotBatchable
        return type(a)(_concat(x, y) for x, y in zip(a, b))
    if a is b or (not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and a == b):
        return a
    raise _NotBatchable


def make_cfg_denoiser(
    dit_call: Callable[..., torch.Tensor],
    cond: Any,
    uncond: Any,
    cfg: float,
    batch: bool = True,
) -> Callable[..., torch.Tensor]:
    """Classifier-free guidance: ``v = v_uncond + cfg * (v_cond - v_uncond)``.

    ``dit_call(x, step, cond, *extra) -> v`` runs the model on x [B, ...] with one conditioning
    (text embeddings, image latents, ... in whatever form it takes). With ``cfg == 1`` only the
    conditional pass runs. With ``batch`` the two passes share one forward on a doubled batch
    (faster, twice the activation memory); conditioning that cannot be concatenated (different
    shapes) silently falls back to two forwards. ``uncond`` may be None only when ``cfg == 1``.
    """
    cfg = float(cfg)
    if cfg != 1.0 and uncond is None:
        raise WanInputError(f"cfg={cfg} needs a negative (unconditional) conditioning; got none")
    if cfg == 1.0:
        return lambda x, step, *extra: dit_call(x, step, cond, *extra)

    joined = None
    if batch:
        try:
            joined = _concat(cond, uncond)
        except _NotBatchable:
            joined = None

    def denoise(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        if joined is not None:
            v_cond, v_uncond = dit_call(torch.cat([x, x]), step, joined, *extra).chunk(2)
        else:
            v_cond = dit_call(x, step, cond, *extra)
            v_uncond = dit_call(x, step, uncond, *extra)
        return v_uncond + cfg * (v_cond - v_uncond)

    return denoise


def uses_high_noise_expert(sigma: torch.Tensor | float, boundary: float) -> bool:
    """True while ``t = sigma * 1000 >= boundary * 1000``, the official Wan2.2 rule (for an integer
    threshold, comparing the truncated integer timestep as the official code does is the same)."""
    return float(sigma) * NUM_TRAIN_TIMESTEPS >= boundary * NUM_TRAIN_TIMESTEPS


def make_expert_switch(
    high: Callable[..., torch.Tensor],
    low: Callable[..., torch.Tensor],
    boundary: float,
) -> Callable[..., torch.Tensor]:
    """A denoiser calling ``high`` at noise levels with ``t >= boundary * 1000``, ``low`` below."""
    if not 0.0 <= boundary <= 1.0:
        raise WanInputError(f"expert boundary must be a fraction of the schedule in [0, 1], got {boundary!r}")

    def denoise(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        expert = high if uses_high_noise_expert(step.sigma, boundary) else low
        return expert(x, step, *extra)

    return denoise

