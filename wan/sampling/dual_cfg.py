"""Phantom's dual classifier-free guidance (ComfyUI's DualCFGGuider, style "regular"): three passes,
text + subject (cond), negative text + subject (middle) and negative text without the subject
(uncond, its subject frames zero), mixed as

    v = v_uncond + cfg_subject * (v_middle - v_uncond) + cfg * (v_cond - v_middle)

``cfg`` (ComfyUI's cfg_conds) pulls towards the prompt, ``cfg_subject`` (cfg_cond2_negative)
towards the subject images. The mix is affine (its weights sum to 1), so forming it on velocities
equals ComfyUI forming it on denoised predictions. As ComfyUI does, a subject scale of 1 skips the
uncond pass and, with cfg 1 too, the middle pass (the skipped terms cancel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..errors import WanInputError
from .step import Step


def without_subject(cond: dict) -> dict:
    """``cond`` with its subject frames zeroed (ComfyUI's negative_img_text: zero raw latent frames,
    zero again once normalised)."""
    return {**cond, "subject": torch.zeros_like(cond["subject"])}


def make_dual_cfg_denoiser(
    dit_call: Callable[..., torch.Tensor],
    cond: Any,
    middle: Any,
    cfg: float | Callable[[Step], float],
    cfg_subject: float,
) -> Callable[..., torch.Tensor]:
    """``fn(x, step, *extra) -> v`` of the dual CFG above; ``dit_call(x, step, cond, *extra)`` as
    for ``guidance.make_cfg_denoiser``; ``middle`` is the negative text with the subject frames
    (its subject-less twin is made here). ``cfg``: a number or a function of the step."""
    if not (isinstance(cfg_subject, (int, float)) and math.isfinite(cfg_subject)):
        raise WanInputError(f"subject_cfg must be a finite number, got {cfg_subject!r}")
    scale_at = cfg if callable(cfg) else (lambda step: float(cfg))
    # both scales 1 take the cond pass alone, so a run without a negative prompt is refused only
    # when a step needs one
    uncond = None if middle is None else without_subject(middle)
    cfg_subject = float(cfg_subject)

    def denoise(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        scale = float(scale_at(step))
        v_cond = dit_call(x, step, cond, *extra)
        if math.isclose(cfg_subject, 1.0) and math.isclose(scale, 1.0):
            return v_cond
        if middle is None:
            raise WanInputError("Phantom's dual guidance needs a negative prompt embedding (it may be empty)")
        v_middle = dit_call(x, step, middle, *extra)
        out = v_middle + scale * (v_cond - v_middle)
        if not math.isclose(cfg_subject, 1.0):
            v_uncond = dit_call(x, step, uncond, *extra)
            out = out + (cfg_subject - 1.0) * (v_middle - v_uncond)
        return out

    return denoise
