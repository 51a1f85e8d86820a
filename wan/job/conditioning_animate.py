"""Wan 2.2 Animate conditioning: a reference image, a pose video and a face video -> what the DiT
takes (ComfyUI's WanAnimateToVideo, the same numbers), with the windowed continuation of a long
driving video (``continue_motion``: the last frames of the previous window, ``video_frame_offset``:
where this window starts in the driving videos).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .conditioning import (
    TEMPORAL, VideoConditioning, _check_vae, as_images, check_size, fit_images, normalize_latent, vae_encode,
)
from ..errors import WanInputError
from ..models.dit.animate import FACE_SIZE
from ..notices import notify


@dataclass(frozen=True)
class AnimateWindow:
    """Where one Animate window leaves the next: ``trim_image`` decoded frames in front repeat the
    continued motion (drop them when joining windows); ``video_frame_offset`` is the next
    window's start in the driving videos."""

    trim_image: int
    video_frame_offset: int


def _from_offset(video, name: str, offset: int) -> torch.Tensor | None:
    """The frames of a driving video from ``offset`` on (None: no video, or it ended before)."""
    if video is None:
        return None
    frames = as_images(video, name)
    return frames[offset:] if frames.shape[0] > offset else None


def animate_conditioning(
    vae,
    width: int,
    height: int,
    num_frames: int,
    reference_image: torch.Tensor | None = None,
    pose_video: torch.Tensor | None = None,
    face_video: torch.Tensor | None = None,
    clip_fea: torch.Tensor | None = None,
    continue_motion: torch.Tensor | None = None,
    continue_motion_max_frames: int = 5,
    video_frame_offset: int = 0,
) -> tuple[VideoConditioning, AnimateWindow]:
    """The conditioning of one Animate window and where the next one starts.

    Images are [N, H, W, 3] in 0..1 at any size: centre-cropped and area-resized to the output
    size (faces to 512x512) as ComfyUI does. reference_image: the character (its frames are
    encoded in front of the video and removed after sampling; None: a black frame). pose_video:
    the driving poses from ``video_frame_offset``, cut to ``num_frames`` or padded by repeating
    its last frame. face_video: the driving face crops from the same offset (fewer frames than the
    video leave the later frames without face). clip_fea: CLIP vision tokens of the reference
    [1, 257, 1280] (optional). continue_motion: the last frames of the previous window (up to
    ``continue_motion_max_frames``), kept at the start of this one.
    """
    _check_vae(vae, 16, "Wan Animate")
    w, h, f = check_size(width, height, num_frames, 16)
    for name, v in (("continue_motion_max_frames", continue_motion_max_frames),
                    ("video_frame_offset", video_frame_offset)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name.startswith("continue") else 0):
            raise WanInputError(f"{name} must be an integer >= {1 if name.startswith('continue') else 0}, got {v!r}")
    if clip_fea is not None and (clip_fea.ndim != 3 or clip_fea.shape[-1] != 1280):
        raise WanInputError(f"clip_embeds of shape {tuple(clip_fea.shape)}: expected [1, 257, 1280] CLIP tokens")

    ref = torch.zeros(1, h, w, 3) if reference_image is None else as_images(reference_image, "reference_image")
    ref_latent = vae_encode(vae, fit_images(ref[:f], w, h, "area"))

    video = torch.full((f, h, w, 3), 0.5)
    motion_frames = 0
    offset = video_frame_offset
    if continue_motion is not None:
        kept = as_images(continue_motion, "continue_motion")[-continue_motion_max_frames:]
        offset = max(0, offset - kept.shape[0])  # the kept frames are driven by the videos again
        kept = fit_images(kept[-f:], w, h, "area")
        video[: kept.shape[0]] = kept.cpu()
        motion_frames = kept.shape[0]
    motion_latents = (motion_frames - 1) // TEMPORAL + 1 if motion_frames else 0

    pose_latents = None
    pose = _from_offset(pose_video, "pose_video", offset)
    if pose is not None:
        pose = fit_images(pose[:f], w, h, "area")
        if pose.shape[0] < f:
            notify(f"pose_video has {pose.shape[0]} frames from frame {offset} on, fewer than the {f} asked: "
                   "its last frame is repeated")
            pose = torch.cat([pose, pose[-1:].expand(f - pose.shape[0], -1, -1, -1)])
        pose_latents = normalize_latent(vae_encode(vae, pose))

    face_pixels = None
    face = _from_offset(face_video, "face_video", offset)
    if face is not None:
        face = fit_images(face[:f], FACE_SIZE, FACE_SIZE, "area") * 2.0 - 1.0
        face_pixels = face.movedim(-1, 0)[None].float().cpu()  # [1, 3, F, 512, 512]

    latent = torch.cat([ref_latent, vae_encode(vae, video)], dim=2)
    t = (f - 1) // TEMPORAL + 1
    known = torch.zeros(latent.shape[2])  # 1: frames the model is given (reference, kept motion)
    known[: ref_latent.shape[2] + motion_latents] = 1
    mask = known.view(1, 1, -1, 1, 1).expand(1, TEMPORAL, -1, latent.shape[-2], latent.shape[-1]).to(latent)
    y = torch.cat([mask, normalize_latent(latent)], dim=1)
    assert y.shape[2] == t + ref_latent.shape[2]
    cond = VideoConditioning(w, h, f, 16, y=y, clip_fea=clip_fea, trim_latent=ref_latent.shape[2],
                             pose_latents=pose_latents, face_pixels=face_pixels)
    return cond, AnimateWindow(max(0, motion_latents * TEMPORAL - 3), offset + f)

