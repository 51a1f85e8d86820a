"""Wan 2.2 Animate conditioning: a reference image, a pose video and a face video -> what the DiT
takes (ComfyUI's WanAnimateToVideo, the same numbers), with the windowed continuation of a long
driving video (``continue_motion``: the last frames of the previous window, ``video_frame_offset``:
where this window starts in the driving videos) and the replace mode (``background_video`` with a
``character_mask``: the character replaces the masked person in an existing video).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .conditioning import (
    TEMPORAL, VideoConditioning, _check_vae, as_images, check_size, fit_images, normalize_latent, vae_encode,
)
from ..errors import WanInputError
from ..finite import check_tensor
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


def _as_mask(mask) -> torch.Tensor:
    """A ComfyUI MASK [N, H, W] (or one [H, W] frame) as float, or WanInputError."""
    if not isinstance(mask, torch.Tensor):
        raise WanInputError(f"character_mask must be a mask tensor [frames, H, W] in 0..1, got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or 0 in mask.shape:
        raise WanInputError(f"character_mask must be [frames, H, W] in 0..1 (a MASK), got shape {tuple(mask.shape)}")
    check_tensor("character_mask", mask)
    return mask.float()


def _character_mask(mask: torch.Tensor, offset: int, f: int, lw: int, lh: int) -> torch.Tensor | None:
    """The character mask of this window at the latent size [<=f, lh, lw] (1: the character, to be
    generated): one frame stands for every frame, else the frames from ``offset`` on (None past the
    end), resized nearest-exact as ComfyUI's WanAnimateToVideo does."""
    if mask.shape[0] == 1:
        mask = mask.expand(f, -1, -1)
    elif mask.shape[0] > offset:
        mask = mask[offset:]
    else:
        return None
    if mask.shape[0] < f:
        notify(f"character_mask has {mask.shape[0]} frames from frame {offset} on, fewer than the {f} asked: "
               "the later frames are generated whole")
    return fit_images(mask[:f, :, :, None], lw, lh, "nearest-exact")[..., 0].cpu()


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
    background_video: torch.Tensor | None = None,
    character_mask: torch.Tensor | None = None,
) -> tuple[VideoConditioning, AnimateWindow]:
    """The conditioning of one Animate window and where the next one starts.

    Images are [N, H, W, 3] in 0..1 at any size: centre-cropped and area-resized to the output
    size (faces to 512x512) as ComfyUI does. reference_image: the character (its frames are
    encoded in front of the video and removed after sampling; None: a black frame). pose_video:
    the driving poses from ``video_frame_offset``, cut to ``num_frames`` or padded by repeating
    its last frame. face_video: the driving face crops from the same offset (fewer frames than the
    video leave the later frames without face). clip_fea: CLIP vision tokens of the reference
    [1, 257, 1280] (optional). continue_motion: the last frames of the previous window (up to
    ``continue_motion_max_frames``), kept at the start of this one. Replace mode: background_video
    (the video the character is put into, from the same offset; frames past its end stay grey)
    and character_mask [N, H, W] (1 where the character goes; one frame for all, or from the same
    offset; frames past its end are generated whole), both at any size, resized as ComfyUI does.
    """
    _check_vae(vae, 16, "Wan Animate")
    w, h, f = check_size(width, height, num_frames, 16)
    for name, v in (("continue_motion_max_frames", continue_motion_max_frames),
                    ("video_frame_offset", video_frame_offset)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name.startswith("continue") else 0):
            raise WanInputError(f"{name} must be an integer >= {1 if name.startswith('continue') else 0}, got {v!r}")
    if clip_fea is not None and (clip_fea.ndim != 3 or clip_fea.shape[-1] != 1280):
        raise WanInputError(f"clip_embeds of shape {tuple(clip_fea.shape)}: expected [1, 257, 1280] CLIP tokens")
    if background_video is not None:
        background_video = as_images(background_video, "background_video")
    if character_mask is not None:
        character_mask = _as_mask(character_mask)

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

    # frames of the previous window kept in front; the background and mask leave them as they are
    kept_frames = max(0, motion_latents * TEMPORAL - 3)
    background = _from_offset(background_video, "background_video", offset)
    if background is not None:
        background = fit_images(background[:f], w, h, "area")
        if background.shape[0] > kept_frames:
            video[kept_frames:background.shape[0]] = background[kept_frames:].cpu()

    t = (f - 1) // TEMPORAL + 1
    lh, lw = ref_latent.shape[-2:]
    generate = torch.ones(t * TEMPORAL, lh, lw)  # per pixel frame, 1: generated (ComfyUI's mask)
    generate[: motion_latents * TEMPORAL] = 0.0
    character = None if character_mask is None else _character_mask(character_mask, offset, f, lw, lh)
    if character is not None and character.shape[0] > kept_frames:
        generate[kept_frames:character.shape[0]] = character[kept_frames:]

    latent = torch.cat([ref_latent, vae_encode(vae, video)], dim=2)
    generate = generate.view(t, TEMPORAL, lh, lw).transpose(0, 1)  # 4 pixel frames per latent frame
    generate = torch.cat([torch.zeros(TEMPORAL, ref_latent.shape[2], lh, lw), generate], dim=1)
    mask = (1.0 - generate)[None].to(latent)  # 1: frames and pixels the model is given
    y = torch.cat([mask, normalize_latent(latent)], dim=1)
    assert y.shape[2] == t + ref_latent.shape[2]
    cond = VideoConditioning(w, h, f, 16, y=y, clip_fea=clip_fea, trim_latent=ref_latent.shape[2],
                             pose_latents=pose_latents, face_pixels=face_pixels)
    return cond, AnimateWindow(kept_frames, offset + f)

