"""Phantom (subject to video) conditioning, as ComfyUI's WanPhantomSubjectToVideo builds it: each
subject image (at most ``num_frames`` of them, the rest dropped as ComfyUI drops them) centre-cropped
and resized bilinearly to the video's size and VAE-encoded on its own into one latent frame; the
frames ride after the video's on the time axis (``models.dit.phantom``). Stored normalised, the
DiT's space (ComfyUI stores them raw and normalises them in its model).

ComfyUI's node gives three conditionings for its DualCFGGuider: positive (text + subject),
negative_text (negative text + subject) and negative_img_text (negative text, zero subject frames);
here they are one ``VideoConditioning`` with ``subject_cfg``, and the sampler makes the three passes
(``sampling.dual_cfg``).
"""

from __future__ import annotations

import math

import torch

from ..errors import WanInputError
from ..notices import notify
from .conditioning import (
    VideoConditioning,
    _check_vae,
    as_images,
    fit_images,
    normalize_latent,
    t2v_conditioning,
    vae_encode,
)

# Phantom-Wan's published defaults (its generate.py): text 7.5, image 5.0
SUBJECT_CFG = 5.0


def phantom_conditioning(vae, images: torch.Tensor | None, width: int, height: int, num_frames: int,
                         subject_cfg: float = SUBJECT_CFG) -> VideoConditioning:
    """Text-to-video with subject images [N, H, W, 3] in 0..1 (None: plain text-to-video) and the
    subject guidance scale of the dual CFG (1: the negative pass keeps the subject frames, a plain CFG)."""
    if isinstance(subject_cfg, bool) or not isinstance(subject_cfg, (int, float)) or not math.isfinite(subject_cfg):
        raise WanInputError(f"subject_cfg must be a finite number, got {subject_cfg!r}")
    cond = t2v_conditioning(width, height, num_frames)
    if images is None:
        return cond
    _check_vae(vae, 16, "Phantom subject to video")
    images = as_images(images, "subject_images")
    if images.shape[0] > cond.num_frames:
        notify(f"{images.shape[0]} subject images for {cond.num_frames} frames: the first {cond.num_frames} "
               "are used (as ComfyUI's WanPhantomSubjectToVideo)")
        images = images[: cond.num_frames]
    images = fit_images(images, cond.width, cond.height)
    frames = [normalize_latent(vae_encode(vae, image[None])).cpu() for image in images]
    return cond.replace(subject=torch.cat(frames, dim=2), subject_cfg=float(subject_cfg))


def check_phantom(cond: VideoConditioning, dit, run, guidance) -> None:
    """Refuse, before sampling, what the subject frames cannot go with."""
    if cond.subject is None:
        return
    cfg = getattr(dit, "cfg", None)
    if cfg is not None and (cfg.cond_channels or cond.y is not None):
        raise WanInputError(f"subject images (Phantom) need a text-to-video model; {cfg.variant} takes image "
                            "conditioning: load Phantom-Wan (or another Wan2.1 T2V) model")
    if run.context is not None:
        raise WanInputError("context windows do not apply to Phantom's subject frames (every window would need "
                            "them): sample the video in one piece")
    if run.parallel is not None and run.parallel.size > 1:
        raise WanInputError("Phantom runs on one GPU: its subject frames are not part of the sequence split")
    if guidance is not None and (guidance.slg is not None or guidance.cfg_zero_star is not None):
        raise WanInputError("skip-layer guidance and CFG-Zero* do not combine with Phantom's dual CFG: "
                            "leave them off")
