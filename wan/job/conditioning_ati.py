"""ATI (trajectory control) conditioning, as ComfyUI's WanTrackToVideo builds it: the image-to-video
conditioning of the first start image (ATI is a Wan2.1 I2V 14B finetune), its latent patched along
the tracks (``tracks.patch_motion``) and the track weights as the mask of ``y``. No tracks: plain
image-to-video, as ComfyUI gives it.
"""

from __future__ import annotations

import math

import torch

from ..errors import WanInputError
from .conditioning import VideoConditioning, as_images, i2v_conditioning
from .tracks import parse_tracks, patch_motion, track_features


def ati_conditioning(vae, clip_vision, image: torch.Tensor, tracks: str | list, width: int, height: int,
                     num_frames: int, temperature: float = 220.0, topk: int = 2) -> VideoConditioning:
    """image [N, H, W, 3] (with tracks the first frame is used, as ComfyUI does), tracks: JSON
    text (``tracks.parse_tracks``) or already parsed tracks; temperature 1..1000 and topk 1..10 as ComfyUI's node takes them."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and 1.0 <= temperature <= 1000.0):
        raise WanInputError(f"temperature must be a number in 1..1000, got {temperature!r}")
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= 10:
        raise WanInputError(f"topk must be an integer in 1..10, got {topk!r}")
    parsed = parse_tracks(tracks) if isinstance(tracks, str) else tracks
    if not parsed:  # ComfyUI's WanImageToVideo, every start frame
        return i2v_conditioning(vae, clip_vision, image, width, height, num_frames)
    cond = i2v_conditioning(vae, clip_vision, as_images(image, "start_image")[:1], width, height, num_frames)
    feats = track_features(parsed, cond.width, cond.height, cond.num_frames)
    mask, latent = patch_motion(feats, cond.y[0, 4:].float().cpu(), temperature, topk)
    return cond.replace(y=torch.cat([mask, latent], dim=0)[None].to(cond.y))
