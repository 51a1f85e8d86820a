"""What the Wan DiT takes besides the noise, built from prompts, images and videos, for each task.

Latent convention (ComfyUI's): latents handed between functions (``sample_video``'s input and output,
a node's LATENT) are RAW VAE latents; the DiT sees them normalised per channel, ``(z - mean) / std``.
Everything stored in a :class:`VideoConditioning` is already in the DiT's (normalised) space.

Images are ComfyUI IMAGEs: float [N, H, W, 3] in 0..1. They are fitted to the target size as
ComfyUI's Wan nodes do (``common_upscale(..., "bilinear", "center")``: centre crop to the target
aspect, then bilinear), so a node and this library build the same tensors from the same inputs.

The tensors follow the official Wan code, diffusers' Wan pipelines and ComfyUI's Wan nodes
(``comfy_extras/nodes_wan.py``), which agree:
- I2V / FLF2V ``y`` = [4-channel mask, 16-channel latent] of the video [first frame, grey..., (last
  frame)]: the mask is 1 on known pixel frames, the first frame counted 4 times so the pixel
  frames fill whole latent frames (1 + 4k -> 4 + 4k), folded 4 per latent frame.
- VACE context = [latent of the inactive video, latent of the reactive video, 64-channel mask]
  (16 + 16 + 64 = 96): the mask is the 8x8 pixel unshuffle of the per-pixel mask, resampled to
  the latent frames (nearest-exact); a reference image is one more latent frame in front (its
  reactive half and its mask zero), removed again after sampling.
- Wan2.2 TI2V: the image's latent replaces the first latent frame(s), which are never denoised
  (timestep 0 there; ``denoise_mask`` 0 on them, as ComfyUI's noise_mask).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..errors import WanInputError
from ..finite import check_tensor
from .memory import check_encode, size_inputs
from ..models.vae.wan21 import WAN21_MEAN, WAN21_STD
from ..models.vae.wan22 import WAN22_MEAN, WAN22_STD
from ..notices import notify
from ..values import FRAMES_RANGE, SIZE_RANGE, range_problem, refuse

_LATENT_STATS = {16: (WAN21_MEAN, WAN21_STD), 48: (WAN22_MEAN, WAN22_STD)}
# pixels per latent pixel for each latent width (Wan2.1 VAE 8x, Wan2.2 VAE 16x)
SPATIAL = {16: 8, 48: 16}
TEMPORAL = 4
VACE_STRIDE = 8  # the official VACE mask unshuffle uses the Wan2.1 VAE stride


class PromptEmbeds(NamedTuple):
    """UMT5 embeddings [B, 512, 4096] (padding zeroed) of the positive and negative prompts."""

    positive: torch.Tensor
    negative: torch.Tensor | None


@dataclass
class VideoConditioning:
    """Everything the DiT needs besides noise and text for one video, in the DiT's latent space.

    y: [1, 20, T, h, w] I2V/FLF2V mask + latent; clip_fea: [1, 257 or 514, 1280] CLIP tokens;
    vace_context: [1, N, 96, T, h, w] with one strength per context; fixed_latent / denoise_mask:
    [1, C, T, h, w] / [1, 1, T, h, w] latent frames held fixed where the mask is 0 (TI2V);
    trim_latent: latent frames in front (VACE or Animate reference) removed after sampling;
    Animate: pose_latents [1, 16, T - 1, h, w] (normalized) and face_pixels [1, 3, F, 512, 512] in
    -1..1 (the negative pass sees a blank face, as ComfyUI's WanAnimateToVideo gives it); camera:
    [1, 24, T, H, W] Plücker embedding (Fun camera); reference: [1, 16, h, w] reference latent (Fun ref conv).
    Phantom: subject [1, 16, S, h, w] normalised subject frames joined after the video's on the time
    axis; subject_cfg: the subject guidance scale of the dual CFG (``sampling.dual_cfg``).
    """

    width: int
    height: int
    num_frames: int
    latent_channels: int = 16
    y: torch.Tensor | None = None
    clip_fea: torch.Tensor | None = None
    vace_context: torch.Tensor | None = None
    vace_strength: tuple[float, ...] = ()
    fixed_latent: torch.Tensor | None = None
    denoise_mask: torch.Tensor | None = None
    trim_latent: int = 0
    pose_latents: torch.Tensor | None = None
    face_pixels: torch.Tensor | None = None
    camera: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    subject: torch.Tensor | None = None
    subject_cfg: float = 1.0
    sound: object | None = None  # S2V: wan.models.dit.s2v.SoundInputs (audio, reference, motion, control)
    humo: object = None  # conditioning_humo.HumoInputs: HuMo's audio windows and reference latents

    @property
    def latent_frames(self) -> int:
        """Latent frames sampled, including the VACE reference frames."""
        return (self.num_frames - 1) // TEMPORAL + 1 + self.trim_latent

    def latent_shape(self, batch: int = 1) -> tuple[int, int, int, int, int]:
        s = SPATIAL[self.latent_channels]
        return (batch, self.latent_channels, self.latent_frames, self.height // s, self.width // s)

    def replace(self, **changes) -> "VideoConditioning":
        return dataclasses.replace(self, **changes)


# -- sizes -------------------------------------------------------------------------------------
def check_size(width: int, height: int, num_frames: int, multiple: int = 16) -> tuple[int, int, int]:
    """(width, height, frames) usable by the VAE and DiT: sizes rounded down to ``multiple`` and
    frames to 1 + 4k (as diffusers does), each change announced with ``warnings.warn``; sizes
    below one ``multiple``, non-integers and frames < 1 are refused with WanInputError."""
    for name, v in (("width", width), ("height", height), ("num_frames", num_frames)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise WanInputError(f"{name} must be an integer, got {v!r}")
    for name, v in (("width", width), ("height", height)):
        if v < multiple:
            raise WanInputError(f"{name} must be at least {multiple} pixels (a multiple of {multiple}), got {v}")
    if num_frames < 1:
        raise WanInputError(f"num_frames must be 1 + 4k (1, 5, 9, ..., 81), got {num_frames}")
    for name, v, limits in (("width", width, SIZE_RANGE), ("height", height, SIZE_RANGE),
                            ("num_frames", num_frames, FRAMES_RANGE)):
        refuse(range_problem(name, v, *limits, integer=True))  # before anything is sized by it
    w, h = width // multiple * multiple, height // multiple * multiple
    if (w, h) != (width, height):
        notify(f"{width}x{height} is not a multiple of {multiple}; using {w}x{h}")
    f = num_frames // TEMPORAL * TEMPORAL + 1 if num_frames % TEMPORAL != 1 else num_frames
    if f != num_frames:
        notify(f"num_frames must be 1 + 4k; using {f} instead of {num_frames}")
    return w, h, f


# -- latent space --------------------------------------------------------------------------------
def _stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    channels = z.shape[1]
    if channels not in _LATENT_STATS:
        raise WanInputError(f"latent of shape {tuple(z.shape)}: expected 16 (Wan2.1 VAE) or 48 (Wan2.2 VAE) channels")
    mean, std = _LATENT_STATS[channels]
    shape = (1, channels) + (1,) * (z.ndim - 2)
    return (torch.tensor(mean, dtype=z.dtype, device=z.device).view(shape),
            torch.tensor(std, dtype=z.dtype, device=z.device).view(shape))


def normalize_latent(z: torch.Tensor) -> torch.Tensor:
    """Raw VAE latent [B, 16 or 48, ...] -> the DiT's space."""
    mean, std = _stats(z)
    return (z - mean) / std


def denormalize_latent(z: torch.Tensor) -> torch.Tensor:
    """The DiT's space -> raw VAE latent."""
    mean, std = _stats(z)
    return z * std + mean


# -- images --------------------------------------------------------------------------------------
def as_images(images, name: str = "image") -> torch.Tensor:
    """[N, H, W, 3] float (a [H, W, 3] image gets N = 1; alpha dropped), or WanInputError."""
    if not isinstance(images, torch.Tensor):
        raise WanInputError(f"{name} must be a tensor [frames, H, W, 3] with values in 0..1, got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (3, 4) or images.shape[0] < 1:
        raise WanInputError(f"{name} must be [frames, H, W, 3] (channels last, 0..1), got shape {tuple(images.shape)}")
    check_tensor(name, images)
    return images[..., :3].float()


def fit_images(images: torch.Tensor, width: int, height: int, mode: str = "bilinear") -> torch.Tensor:
    """[N, H, W, C] -> [N, height, width, C]: centre crop to the aspect, then resized by ``mode``
    ("bilinear", "area": ComfyUI's ``common_upscale(..., mode, "center")``)."""
    x = images.movedim(-1, 1)
    old_h, old_w = x.shape[-2:]
    if (old_h, old_w) == (height, width):
        return images
    old_aspect, new_aspect = old_w / old_h, width / height
    top = left = 0
    if old_aspect > new_aspect:
        left = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        top = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    x = x[:, :, top:old_h - top, left:old_w - left]
    return F.interpolate(x, size=(height, width), mode=mode).movedim(1, -1)


def vae_encode(vae, frames: torch.Tensor) -> torch.Tensor:
    """frames [F, H, W, 3] in 0..1 -> raw latent [1, C, T, h, w] float32 (on the VAE's device)."""
    f, h, w = frames.shape[:3]
    check_encode(vae, f, h, w, inputs=f"encoding {f} frames of {w}x{h} (image)")
    p = next(vae.parameters())
    video = frames.movedim(-1, 0)[None].to(device=p.device, dtype=torch.float32) * 2.0 - 1.0
    return vae.encode(video.to(p.dtype)).float()


def vae_encode_chunks(vae, frames_of, num_frames: int, height: int, width: int) -> torch.Tensor:
    """``vae_encode`` of a video made chunk by chunk: ``frames_of(a, b)`` gives frames a..b-1 [n, H,
    W, 3] in 0..1, asked for in the encoder's causal steps (frame 0, then 4 at a time), so only one
    chunk is in float at once however long the video (a VACE control video)."""
    p = next(vae.parameters())
    steps = [(0, 1)] + [(a, a + TEMPORAL) for a in range(1, num_frames, TEMPORAL)]

    def pixels():
        for a, b in steps:
            yield frames_of(a, b).movedim(-1, 0)[None].to(device=p.device, dtype=torch.float32) * 2.0 - 1.0

    chunks = vae.encode_chunks(pixels(), (height, width), total=len(steps))
    return torch.cat([z.float() for z in chunks], dim=2)


def _check_vae(vae, channels: int, task: str) -> None:
    if vae.z_dim != channels:
        family = "Wan2.1 (16 latent channels)" if channels == 16 else "Wan2.2 (48 latent channels)"
        raise WanInputError(f"{task} needs the {family} VAE, got a VAE with {vae.z_dim} latent channels")


# -- prompts -------------------------------------------------------------------------------------
def prompt_list(value, name: str) -> list[str]:
    """``value`` (a prompt or a list of prompts) as a list, or WanInputError naming input ``name``."""
    prompts = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise WanInputError(f"{name} must be text (or a non-empty list of texts), got {type(value).__name__}")
    return prompts


def encode_prompts(text_encoder, positive: str | Sequence[str], negative: str | Sequence[str] | None = "") -> PromptEmbeds:
    """UMT5 embeddings of the prompts, float32 [B, 512, dim]; ``negative=None`` gives no negative
    (for cfg = 1)."""
    pos = prompt_list(positive, "positive_prompt")
    neg = None
    if negative is not None:
        neg = prompt_list(negative, "negative_prompt")
        if len(neg) == 1 and len(pos) > 1:
            neg = neg * len(pos)
        if len(neg) != len(pos):
            raise WanInputError(f"{len(pos)} positive_prompt texts but {len(neg)} negative_prompt texts")
    if neg is not None and len(pos) == 1:
        emb, _ = text_encoder.encode(pos + neg)
        return PromptEmbeds(emb[:1], emb[1:])
    pos_emb, _ = text_encoder.encode(pos)
    neg_emb = text_encoder.encode(neg)[0] if neg is not None else None
    return PromptEmbeds(pos_emb, neg_emb)


# -- tasks ---------------------------------------------------------------------------------------
def t2v_conditioning(width: int, height: int, num_frames: int, latent_channels: int = 16) -> VideoConditioning:
    """Text-to-video (and text-to-image with one frame): sizes only."""
    multiple = 2 * SPATIAL[latent_channels]
    w, h, f = check_size(width, height, num_frames, multiple)
    return VideoConditioning(w, h, f, latent_channels)


def i2v_conditioning(
    vae,
    clip_vision,
    image: torch.Tensor,
    width: int,
    height: int,
    num_frames: int,
    end_image: torch.Tensor | None = None,
    noise_aug_strength: float = 0.0,
    seed: int = 0,
) -> VideoConditioning:
    """Image-to-video (start frames) and first-last-frame-to-video (``end_image``).

    image / end_image: [N, H, W, 3] in 0..1; up to ``num_frames`` start frames (ComfyUI's
    WanImageToVideo) and end frames (WanFirstLastFrameToVideo). clip_vision: encodes the first
    start frame and the last end frame (514 tokens for FLF2V); None for models without the CLIP path
    (Wan2.2 I2V A14B). ``noise_aug_strength`` adds seeded Gaussian noise of that standard deviation
    (in -1..1 units) to the known frames before encoding. CLIP sees the images as given (it crops
    and resizes to its own size), as the official code and ComfyUI's CLIPVisionEncode do.
    """
    _check_vae(vae, 16, "image-to-video")
    w, h, f = check_size(width, height, num_frames, 16)
    start = fit_images(as_images(image, "start_image")[:f], w, h) if image is not None else None
    end = fit_images(as_images(end_image, "end_image")[-f:], w, h) if end_image is not None else None
    if start is None and end is None:
        raise WanInputError("image-to-video needs a start image, an end image or both")
    if not noise_aug_strength >= 0:
        raise WanInputError(f"noise_aug_strength must be >= 0, got {noise_aug_strength!r}")
    check_encode(vae, f, h, w, host_videos=1 if noise_aug_strength == 0 else 3)  # (+ the noise, the sum)
    t = (f - 1) // TEMPORAL + 1
    video = torch.full((f, h, w, 3), 0.5)
    known = torch.zeros(t * TEMPORAL)  # per pixel frame, the first counted 4 times
    if start is not None:
        video[: start.shape[0]] = start.cpu()
    if end is not None:
        video[f - end.shape[0]:] = end.cpu()
    if end is None:  # WanImageToVideo marks whole latent frames
        known[: ((start.shape[0] - 1) // TEMPORAL + 1) * TEMPORAL] = 1
    else:  # WanFirstLastFrameToVideo marks pixel frames
        if start is not None:
            known[: start.shape[0] + TEMPORAL - 1] = 1
        known[known.shape[0] - end.shape[0]:] = 1
    if noise_aug_strength > 0:
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(video.shape, generator=g) * (noise_aug_strength / 2)  # 0..1 units
        marked = torch.zeros(f, dtype=torch.bool)
        if start is not None:
            marked[: start.shape[0]] = True
        if end is not None:
            marked[f - end.shape[0]:] = True
        video = torch.where(marked.view(-1, 1, 1, 1), video + noise, video)
    latent = vae_encode(vae, video)
    mask = known.view(1, t, TEMPORAL, 1, 1).transpose(1, 2)  # [1, 4, T, 1, 1]
    mask = mask.expand(1, TEMPORAL, t, latent.shape[-2], latent.shape[-1]).to(latent)
    y = torch.cat([mask, normalize_latent(latent)], dim=1)

    clip_fea = None
    if clip_vision is not None:  # the images as given: CLIP crops and resizes them itself
        tokens = []
        if image is not None:
            tokens.append(clip_vision.encode(as_images(image, "start_image")[:1]).float())
        if end_image is not None:
            tokens.append(clip_vision.encode(as_images(end_image, "end_image")[-1:]).float())
        clip_fea = torch.cat(tokens, dim=1)
    return VideoConditioning(w, h, f, 16, y=y, clip_fea=clip_fea)


def vace_conditioning(
    vae,
    width: int,
    height: int,
    num_frames: int,
    strength: float = 1.0,
    reference_image: torch.Tensor | None = None,
    control_video: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> VideoConditioning:
    """VACE: control video [F, H, W, 3] (grey where missing), mask [F, H, W] (or [F, H, W, 1]; 1 =
    generate, 0 = keep the control video's pixels; default all ones), reference image [1, H, W, 3].
    Inputs shorter than ``num_frames`` are padded as ComfyUI's WanVaceToVideo pads them."""
    _check_vae(vae, 16, "VACE")
    w, h, f = check_size(width, height, num_frames, 16)
    if not strength >= 0:
        raise WanInputError(f"VACE strength must be >= 0, got {strength!r}")
    if control_video is not None:
        control_video = as_images(control_video, "control_video")
    if mask is not None:
        check_tensor("VACE mask", mask)
    # encoded one causal chunk at a time: on the host a chunk fitted, centred and masked
    check_encode(vae, min(f, TEMPORAL), h, w, host_videos=3, inputs=size_inputs(w, h, f))
    t = (f - 1) // TEMPORAL + 1
    given = 0 if control_video is None else min(control_video.shape[0], f)

    def control(a: int, b: int) -> torch.Tensor:  # frames a..b-1 fitted, grey past the end
        frames = torch.full((b - a, h, w, 3), 0.5)
        if a < given:
            frames[: min(b, given) - a] = fit_images(control_video[a:min(b, given)], w, h).cpu()
        return frames

    if mask is None:
        m = torch.ones(f, h, w, 1)
    else:
        m = mask.float()
        if m.ndim == 4 and m.shape[-1] == 1:
            m = m[..., 0]
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3:
            raise WanInputError(f"VACE mask must be [frames, H, W] in 0..1, got shape {tuple(mask.shape)}")
        m = fit_images(m[:f, :, :, None], w, h).cpu()
        if m.shape[0] < f:
            m = F.pad(m, (0, 0, 0, 0, 0, 0, 0, f - m.shape[0]), value=1.0)
    inactive = vae_encode_chunks(vae, lambda a, b: (control(a, b) - 0.5) * (1 - m[a:b]) + 0.5, f, h, w)
    reactive = vae_encode_chunks(vae, lambda a, b: (control(a, b) - 0.5) * m[a:b] + 0.5, f, h, w)
    frames = torch.cat([normalize_latent(inactive), normalize_latent(reactive)], dim=1)  # [1, 32, T, h, w]

    hm, wm = h // VACE_STRIDE, w // VACE_STRIDE
    m = m.view(f, hm, VACE_STRIDE, wm, VACE_STRIDE).permute(2, 4, 0, 1, 3).reshape(VACE_STRIDE ** 2, f, hm, wm)
    m = F.interpolate(m[None], size=(t, hm, wm), mode="nearest-exact")  # [1, 64, T, h, w]

    trim = 0
    if reference_image is not None:
        ref = fit_images(as_images(reference_image, "reference_image")[:1], w, h)
        ref = normalize_latent(vae_encode(vae, ref))
        frames = torch.cat([torch.cat([ref, torch.zeros_like(ref)], dim=1), frames], dim=2)
        m = torch.cat([torch.zeros_like(m[:, :, :1]), m], dim=2)
        trim = 1
    context = torch.cat([frames, m.to(frames)], dim=1)[:, None]  # [1, 1, 96, T, h, w]
    return VideoConditioning(w, h, f, 16, vace_context=context, vace_strength=(float(strength),), trim_latent=trim)


def ti2v_conditioning(vae, width: int, height: int, num_frames: int, image: torch.Tensor | None = None) -> VideoConditioning:
    """Wan2.2 TI2V-5B: without ``image`` plain text-to-video; with it, the image's latent (its
    first ``num_frames`` frames) replaces the first latent frame(s), held fixed during sampling."""
    _check_vae(vae, 48, "Wan2.2 TI2V")
    w, h, f = check_size(width, height, num_frames, 32)
    cond = VideoConditioning(w, h, f, 48)
    if image is None:
        return cond
    start = fit_images(as_images(image, "start_image")[:f], w, h)
    latent = normalize_latent(vae_encode(vae, start))
    shape = cond.latent_shape()
    fixed = torch.zeros(shape, device=latent.device)
    k = latent.shape[2]
    fixed[:, :, :k] = latent
    keep = torch.ones((1, 1) + shape[2:], device=latent.device)
    keep[:, :, :k] = 0
    return cond.replace(fixed_latent=fixed, denoise_mask=keep)
