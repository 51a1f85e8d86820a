"""The DiT's keyword sets of one job (positive and negative passes) from its conditioning, and the
checks of families that take no context windows or sequence split of their own."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import WanInputError
from .conditioning import PromptEmbeds, VideoConditioning
from .conditioning_humo import humo_conds
from .options import RunOptions


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.float32)
    return value


def dit_conds(text: PromptEmbeds, image: VideoConditioning, device: torch.device) -> tuple[dict, dict | None]:
    """(positive, negative) keyword sets for the DiT; everything but the text is shared."""
    shared = {
        "clip_fea": image.clip_fea,
        "y": image.y,
        "vace_context": image.vace_context,
        "fixed_latent": image.fixed_latent,
        "denoise_mask": image.denoise_mask,
        "pose_latents": image.pose_latents,
        "camera": image.camera,
        "reference": image.reference,
        "subject": image.subject,
    }
    shared = {k: _to(v, device) for k, v in shared.items() if v is not None}
    if image.vace_context is not None:
        shared["vace_strength"] = tuple(image.vace_strength)
    pos = {"context": _to(text.positive, device), **shared}
    neg = None if text.negative is None else {"context": _to(text.negative, device), **shared}
    if image.face_pixels is not None:
        pos["face_pixels"] = _to(image.face_pixels, device)
        if neg is not None:  # Animate's negative pass sees a blank face (ComfyUI's WanAnimateToVideo)
            neg["face_pixels"] = torch.full_like(pos["face_pixels"], -1.0)
    if image.sound is not None:  # S2V, as dicts (batched CFG joins them); the negative hears silence (audio * 0)
        pos["sound"] = {k: _to(v, device) for k, v in vars(image.sound).items()}
        if neg is not None:
            neg["sound"] = {k: _to(v, device) for k, v in vars(image.sound.silent()).items()}
    if image.humo is not None:
        humo_conds(image.humo, pos, neg, device)
    return pos, neg


def check_animate(dit, run: RunOptions) -> None:
    # Face tokens belong to whole latent frames and the face video to the whole clip: a context
    # window or a token split would cut them apart (long videos: windows of Wan Animate Embeds)
    if getattr(getattr(dit, "cfg", None), "is_animate", False):
        if run.context is not None:
            raise WanInputError("context windows do not apply to Wan Animate: make a long video window by window "
                                "(continue_motion and video_frame_offset of the Animate conditioning)")
        if run.parallel is not None and run.parallel.size > 1:
            raise WanInputError("Wan Animate runs on one GPU: its face adapter attends per latent frame, which a "
                                "sequence split cuts")


def token_frames(image: VideoConditioning) -> tuple[int, ...]:
    """The latent shape the DiT's tokens span: the video's plus the latent frames some families put
    beside it (Phantom's subject frames, the HuMo / S2V reference frame), for the memory plan.
    S2V's frame-packed motion tokens are not counted (a few frames' worth)."""
    b, c, f, h, w = image.latent_shape()
    extra = 0 if image.subject is None else int(image.subject.shape[2])
    reference = getattr(image.humo, "reference", None) if image.humo is not None else None
    if reference is None and image.sound is not None:
        reference = image.sound.reference
    if reference is not None:
        extra += int(reference.shape[2]) if reference.ndim == 5 else 1
    return (b, c, f + extra, h, w)


__all__ = ["dit_conds", "check_animate", "token_frames"]
