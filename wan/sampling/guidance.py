"""Guidance layers of the denoiser callable: classifier-free guidance (a scale per step), with
CFG-Zero* and skip-layer guidance on top, and ``GuidanceOptions``, the bundle of the optional ones
(NAG, which works inside the DiT's cross-attention, is applied around the model: ``nag.use_nag``).

A denoiser is ``fn(x, step, *extra) -> v`` (flow prediction, see ``samplers``; ``step`` is the
sampler's ``Step``); ``extra`` carries whatever the layer below needs, e.g. the window indices of
``context.make_context_denoiser``, and is passed through untouched. Layers compose in any order; the
sampler only ever calls ``fn(x, step)`` (through ``samplers.flow_to_x0``). The Wan2.2 expert switch
is in ``experts``.

Plain CFG is computed on velocities. CFG-Zero* and skip-layer guidance are ComfyUI post-CFG
functions on denoised (x0) predictions, so with either the CFG result is formed on x0 = x - sigma * v
as ComfyUI's ``cfg_function`` does, corrected, and handed back as a velocity. Order: CFG, CFG-Zero*,
skip-layer guidance (ComfyUI applies post-CFG functions in the order their nodes patch the model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import WanInputError
from .cfg_zero import CFGZeroStar, cfg_zero_star
from .nag import NAGOptions
from .slg import SkipLayerGuidance, apply_slg, slg_active
from .step import Step

# a CFG scale: one number for every step, or a function of the step
Scale = float | Callable[[Step], float]


@dataclass(frozen=True)
class GuidanceOptions:
    """Optional guidance of a run (what the Wan Guidance Options node makes): CFG-Zero*, skip-layer
    guidance, NAG; None: off."""

    cfg_zero_star: CFGZeroStar | None = None
    slg: SkipLayerGuidance | None = None
    nag: NAGOptions | None = None


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
    cfg: Scale,
    batch: bool = True,
    zero_star: CFGZeroStar | None = None,
    slg: SkipLayerGuidance | None = None,
    slg_call: Callable[..., torch.Tensor] | None = None,
    shift: float = 1.0,
) -> Callable[..., torch.Tensor]:
    """Classifier-free guidance: ``v = v_uncond + cfg * (v_cond - v_uncond)``.

    ``dit_call(x, step, cond, *extra) -> v`` runs the model on x [B, ...] with one conditioning
    (text embeddings, image latents, ... in whatever form it takes). ``cfg``: a number, or
    ``cfg(step) -> number`` for a scale per step. At a step whose scale is 1 only the conditional
    pass runs. With ``batch`` the two passes share one forward on a doubled batch (faster, twice the
    activation memory); conditioning that cannot be concatenated (different shapes) silently falls
    back to two forwards. ``uncond`` may be None only where the scale is 1.

    zero_star: CFG-Zero* (``cfg_zero``). slg: skip-layer guidance, its pass made by ``slg_call``
    (a ``dit_call`` through ``slg.skip_forward``) on ``cond``, its window read with ``shift``.
    """
    if callable(cfg):
        scale_at = cfg
    else:
        scale = float(cfg)
        if scale != 1.0 and uncond is None:
            raise WanInputError(f"cfg={scale} needs a negative (unconditional) conditioning; got none")
        scale_at = lambda step: scale  # noqa: E731
    if slg is not None and slg_call is None:
        raise WanInputError("skip-layer guidance needs the model call with layers skipped (slg_call)")

    joined = None
    if batch and uncond is not None:
        try:
            joined = _concat(cond, uncond)
        except _NotBatchable:
            joined = None

    def denoise(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        if zero_star is not None and step.index < zero_star.zero_init_steps:
            return torch.zeros_like(x, dtype=torch.float32)  # v = 0: x0 = x, the sample is kept
        scale = float(scale_at(step))
        v_uncond = None
        if scale == 1.0:
            v_cond = dit_call(x, step, cond, *extra)
        elif uncond is None:
            raise WanInputError(f"cfg={scale} at step {step.index + 1} needs a negative (unconditional) "
                                "conditioning; got none")
        elif joined is not None:
            v_cond, v_uncond = dit_call(torch.cat([x, x]), step, joined, *extra).chunk(2)
        else:
            v_cond = dit_call(x, step, cond, *extra)
            v_uncond = dit_call(x, step, uncond, *extra)
        skip = slg is not None and slg_active(slg, step, shift)
        if not skip and (zero_star is None or v_uncond is None):
            return v_cond if v_uncond is None else v_uncond + scale * (v_cond - v_uncond)
        xf, sigma = x.float(), step.sigma.to(x.device)
        x0_cond = xf - sigma * v_cond
        out = x0_cond
        if v_uncond is not None:
            x0_uncond = xf - sigma * v_uncond
            out = x0_uncond + (x0_cond - x0_uncond) * scale
            if zero_star is not None:
                out = cfg_zero_star(xf, x0_cond, x0_uncond, out, scale)
        if skip:
            out = apply_slg(slg, out, x0_cond, xf - sigma * slg_call(x, step, cond, *extra))
        return (xf - out) / sigma

    return denoise
