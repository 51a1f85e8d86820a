"""Conditioning of the Fun models (VideoX-Fun): inpaint, control and camera, as ComfyUI's nodes
build it (comfy_extras/nodes_wan.py) and its model turns it into ``y`` (model_base.WAN21.concat_cond).

Latents are stored normalised (the DiT's space), so the "empty" latent ComfyUI fills in (the VAE's
mean in raw space) is zero here.
- Inpaint (WanFunInpaintToVideo = WanFirstLastFrameToVideo): ``y`` = [4-channel known mask, latent of
  [start frames, grey..., end frames]]; the mask marks pixel frames, the first counted 4 times; CLIP
  tokens of the start image only (the Fun inpaint models have no first/last-frame embedding).
- Control: ``y`` = [control video latent, 4-channel known mask, start frames latent] (Wan22FunControl-
  ToVideo); the 2.1 models (WanFunControlToVideo) take it without the mask, see ``fit_to_model``.
  The Wan 2.2 Fun 5B control model takes the same with the Wan2.2 VAE's 48-channel latents.
  A reference image (2.1 V1.1 and 2.2 models' ref conv) is one more latent frame, its own input.
- Camera (WanCameraImageToVideo): ``y`` = [known mask, start frames latent] (2.1: latent only) and
  the Plücker embedding [1, 24, T, H, W] (``camera_poses``).
Inputs of another size are fitted (centre crop + bilinear) and cut to the video's length as
ComfyUI does; a camera embedding is never resized (ComfyUI's model cannot take one of another size
either), so one of another size or length is refused here, before anything is sampled.
"""

from __future__ import annotations

import torch

from ..errors import WanInputError
from ..finite import check_tensor
from ..notices import notify
from .conditioning import (
    SPATIAL,
    TEMPORAL,
    VideoConditioning,
    _check_vae,
    as_images,
    check_size,
    fit_images,
    normalize_latent,
    vae_encode,
)
from .memory import check_encode

LATENT = 16  # the Fun conditioning is built with the Wan2.1 VAE (control: also the 5B's Wan2.2 VAE)


def _known_mask(t: int, h: int, w: int, start: int = 0, end: int = 0) -> torch.Tensor:
    """[1, 4, T, h, w]: 1 on known pixel frames (the first counted 4 times: ``start`` frames mark
    ``start + 3`` slots), folded 4 per latent frame."""
    known = torch.zeros(t * TEMPORAL)
    if start:
        known[: start + TEMPORAL - 1] = 1
    if end:
        known[known.shape[0] - end:] = 1
    return known.view(1, t, TEMPORAL, 1, 1).transpose(1, 2).expand(1, TEMPORAL, t, h, w).contiguous()


def _front_latent(vae, frames: torch.Tensor | None, t: int, h: int, w: int, channels: int = LATENT) -> torch.Tensor:
    """The normalised latent of ``frames`` in the first latent frames, zero after (ComfyUI writes the
    encoded frames over its empty latent)."""
    out = torch.zeros(1, channels, t, h, w)
    if frames is not None:
        z = normalize_latent(vae_encode(vae, frames[: (frames.shape[0] - 1) // TEMPORAL * TEMPORAL + 1])).cpu()
        out[:, :, : z.shape[2]] = z[:, :, :t]
    return out


def _clip(clip_vision, image) -> torch.Tensor | None:
    if clip_vision is None or image is None:
        return None
    return clip_vision.encode(as_images(image, "start_image")[:1]).float()


def _start(image, name: str, f: int, w: int, h: int) -> torch.Tensor | None:
    return None if image is None else fit_images(as_images(image, name)[:f], w, h)


def fun_inpaint_conditioning(vae, clip_vision, width: int, height: int, num_frames: int,
                             start_image: torch.Tensor | None = None,
                             end_image: torch.Tensor | None = None) -> VideoConditioning:
    """Fun inpaint: start and/or end frames [N, H, W, 3] in 0..1 (up to ``num_frames`` each); the
    frames between are generated. clip_vision (or None) encodes the first start frame."""
    _check_vae(vae, LATENT, "Fun inpaint")
    w, h, f = check_size(width, height, num_frames, 16)
    start = _start(start_image, "start_image", f, w, h)
    end = None if end_image is None else fit_images(as_images(end_image, "end_image")[-f:], w, h)
    check_encode(vae, f, h, w, host_videos=1)
    video = torch.full((f, h, w, 3), 0.5)
    if start is not None:
        video[: start.shape[0]] = start.cpu()
    if end is not None:
        video[f - end.shape[0]:] = end.cpu()
    latent = normalize_latent(vae_encode(vae, video)).cpu()
    t, lh, lw = latent.shape[2:]
    mask = _known_mask(t, lh, lw, 0 if start is None else start.shape[0], 0 if end is None else end.shape[0])
    return VideoConditioning(w, h, f, LATENT, y=torch.cat([mask, latent], dim=1),
                             clip_fea=_clip(clip_vision, start_image))


def fun_control_conditioning(vae, clip_vision, width: int, height: int, num_frames: int,
                             control_video: torch.Tensor | None = None,
                             start_image: torch.Tensor | None = None,
                             reference_image: torch.Tensor | None = None) -> VideoConditioning:
    """Fun control: a control video [N, H, W, 3] (depth, pose, canny... frames; cut to
    ``num_frames``, zero latent after a shorter one), optional start frames and a reference image
    (its first frame; used by models with the reference conv). The Wan2.1 VAE, or the Wan2.2 VAE
    for the Wan 2.2 Fun 5B control model (48-channel latents, sizes multiples of 32)."""
    lc = getattr(vae, "z_dim", LATENT)
    _check_vae(vae, lc if lc in SPATIAL else LATENT, "Fun control")
    w, h, f = check_size(width, height, num_frames, 2 * SPATIAL[lc])
    s = SPATIAL[lc]
    t, lh, lw = (f - 1) // TEMPORAL + 1, h // s, w // s
    control = _start(control_video, "control_video", f, w, h)
    start = _start(start_image, "start_image", f, w, h)
    y = torch.cat([_front_latent(vae, control, t, lh, lw, lc),
                   _known_mask(t, lh, lw, 0 if start is None else start.shape[0]),
                   _front_latent(vae, start, t, lh, lw, lc)], dim=1)
    reference = None
    if reference_image is not None:
        ref = fit_images(as_images(reference_image, "reference_image")[:1], w, h)
        reference = normalize_latent(vae_encode(vae, ref)).cpu()[:, :, 0]
    return VideoConditioning(w, h, f, lc, y=y, clip_fea=_clip(clip_vision, start_image), reference=reference)


def fun_camera_conditioning(vae, clip_vision, width: int, height: int, num_frames: int,
                            camera: torch.Tensor | None = None,
                            start_image: torch.Tensor | None = None) -> VideoConditioning:
    """Fun camera: the Plücker embedding [1, 24, T, height, width] (``camera_poses.camera_embedding``
    or ComfyUI's WAN_CAMERA_EMBEDDING) and optional start frames."""
    _check_vae(vae, LATENT, "Fun camera")
    w, h, f = check_size(width, height, num_frames, 16)
    s = SPATIAL[LATENT]
    t, lh, lw = (f - 1) // TEMPORAL + 1, h // s, w // s
    if camera is not None:
        check_camera(camera, w, h, f)
        camera = camera.detach().float().cpu()
    y = None
    start = _start(start_image, "start_image", f, w, h)
    if start is not None:  # without a start image ComfyUI gives its model no image latent (zeros)
        y = torch.cat([_known_mask(t, lh, lw, start.shape[0]), _front_latent(vae, start, t, lh, lw)], dim=1)
    return VideoConditioning(w, h, f, LATENT, y=y, clip_fea=_clip(clip_vision, start_image), camera=camera)


def check_camera(camera, width: int, height: int, num_frames: int) -> None:
    """A camera embedding must be [1, 24, latent frames, height, width] of this video."""
    if not isinstance(camera, torch.Tensor) or camera.ndim != 5 or camera.shape[0] != 1 or camera.shape[1] != 24:
        shape = tuple(camera.shape) if isinstance(camera, torch.Tensor) else type(camera).__name__
        raise WanInputError(f"camera embedding of shape {shape}: expected [1, 24, latent frames, height, width] "
                            "(from Wan Camera Embeds or ComfyUI's WanCameraEmbedding)")
    t = (num_frames - 1) // TEMPORAL + 1
    got_frames = (camera.shape[2] - 1) * TEMPORAL + 1
    if camera.shape[2] != t:
        raise WanInputError(f"camera poses for {got_frames} frames but the video has {num_frames}: "
                            f"make the camera embedding with length {num_frames}")
    if tuple(camera.shape[3:]) != (height, width):
        raise WanInputError(f"camera embedding of {camera.shape[4]}x{camera.shape[3]} but the video is "
                            f"{width}x{height}: make it with the video's width and height")
    check_tensor("camera embedding", camera)


def fit_to_model(cond: VideoConditioning, cfg, name: str | None = None) -> VideoConditioning:
    """``cond`` in the layout the DiT of ``cfg`` takes, or WanInputError before sampling: the 2.1
    Fun control and camera models take ``y`` without the mask; a Fun control or camera model
    without a start image gets zeros (as ComfyUI gives them); a camera embedding needs a camera model.
    ``name``: the model's file, named in the errors (else its variant)."""
    if cfg is None:
        return cond
    model = f"{name} ({cfg.variant})" if name else cfg.variant
    lc, y = cfg.out_dim, cond.y
    if y is not None and y.shape[1] == cfg.cond_channels + 4 and cfg.model_type in ("fun_control", "camera"):
        keep = [c for c in range(y.shape[1]) if not (y.shape[1] - lc - 4 <= c < y.shape[1] - lc)]
        y = y[:, keep]  # the mask sits just before the image latent
    if y is None and cfg.model_type in ("fun_control", "camera") and cfg.cond_channels:
        y = torch.zeros(1, cfg.cond_channels, *cond.latent_shape()[2:])
    if y is not None and y.shape[1] != cfg.cond_channels:
        raise WanInputError(f"the diffusion model {model} (task {cfg.model_type}) takes {cfg.cond_channels} "
                            f"conditioning channels, the image_embeds hold {y.shape[1]}: use the encode node "
                            f"of this model's task")
    if cond.camera is not None and not cfg.camera_in_dim:
        raise WanInputError(f"a camera embedding was given but the diffusion model {model} has no camera "
                            "adapter: use a Fun camera (Control-Camera) model")
    if cond.reference is not None and not cfg.ref_in_dim:
        notify(f"the diffusion model {model} has no reference conv: the reference image is not used")
    return cond if y is cond.y else cond.replace(y=y)
