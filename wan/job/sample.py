"""``sample_video``: seeded noise -> denoised latent for any Wan task, the one place where the DiT,
guidance, the Wan2.2 expert switch, context windows and the sampler are put together.

Timesteps: the DiT is called with the timestep its reference pipeline passes for each sigma of the
chosen sampler's grid (``schedules.get_timesteps``: diffusers' integer timesteps for unipc and
dpm++_2m, float for euler/lcm), so a run reproduces diffusers step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .conditioning import PromptEmbeds, VideoConditioning, denormalize_latent, normalize_latent
from ..errors import WanInputError
from ..sampling.context import ContextOptions, make_context_denoiser, slice_frames
from ..sampling.guidance import BOUNDARY_I2V, BOUNDARY_T2V, make_cfg_denoiser, make_expert_switch
from ..sampling.noise import make_generator, noise_latents, randn_like_cpu
from ..sampling.samplers import SAMPLER_SCHEDULES, SAMPLERS
from ..sampling.schedules import get_sigmas, get_timesteps

Callback = Callable[[int, int, torch.Tensor], None]


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=torch.float32)
    return value


def _conds(text: PromptEmbeds, image: VideoConditioning, device: torch.device) -> tuple[dict, dict | None]:
    """(positive, negative) keyword sets for the DiT; everything but the text is shared."""
    shared = {
        "clip_fea": image.clip_fea,
        "y": image.y,
        "vace_context": image.vace_context,
        "fixed_latent": image.fixed_latent,
        "denoise_mask": image.denoise_mask,
    }
    shared = {k: _to(v, device) for k, v in shared.items() if v is not None}
    if image.vace_context is not None:
        shared["vace_strength"] = tuple(image.vace_strength)
    pos = {"context": _to(text.positive, device), **shared}
    neg = None if text.negative is None else {"context": _to(text.negative, device), **shared}
    return pos, neg


def _hold_fixed(x: torch.Tensor, cond: dict) -> torch.Tensor:
    """Latent frames where ``denoise_mask`` is 0 replaced by ``fixed_latent`` (Wan2.2 TI2V)."""
    mask = cond.get("denoise_mask")
    if mask is None:
        return x
    return cond["fixed_latent"].to(x.dtype) * (1 - mask) + x * mask


def make_dit_call(dit: torch.nn.Module, timestep_of: Callable[[torch.Tensor], torch.Tensor], num_frames: int):
    """``fn(x, sigma, cond, window=None) -> v``: one DiT evaluation with a conditioning dict from
    ``_conds`` (sliced to the context window's latent frames when one is given)."""

    def call(x: torch.Tensor, sigma: torch.Tensor, cond: dict, window=None) -> torch.Tensor:
        if window is not None:
            vace = cond.get("vace_context")  # [B, N, 96, T, h, w]: frames on dim 3
            cond = slice_frames(cond, window, num_frames)
            if vace is not None:
                cond = {**cond, "vace_context": vace[:, :, :, list(window)]}
        t = timestep_of(sigma).to(x.device)
        mask = cond.get("denoise_mask")
        if mask is not None:
            x = _hold_fixed(x, cond)
            # per-frame timesteps, 0 on held frames (ComfyUI's WAN22.process_timestep)
            t = mask.mean(dim=(1, 3, 4)).expand(x.shape[0], -1) * t
        kw = {k: cond[k] for k in ("clip_fea", "y", "vace_context", "vace_strength") if k in cond}
        return dit(x, t, cond["context"], **kw).float()

    return call


def _timestep_lookup(sigmas: torch.Tensor, timesteps: torch.Tensor):
    table = {float(s): float(t) for s, t in zip(sigmas[:-1].tolist(), timesteps.tolist())}

    def timestep_of(sigma: torch.Tensor) -> torch.Tensor:
        s = float(sigma)
        return torch.tensor(table.get(s, s * 1000.0), dtype=torch.float32)

    return timestep_of


def sample_video(
    dit: torch.nn.Module,
    text_embeds: PromptEmbeds,
    image_embeds: VideoConditioning,
    steps: int = 30,
    cfg: float = 5.0,
    shift: float = 5.0,
    seed: int = 0,
    sampler: str = "unipc",
    denoise: float = 1.0,
    latents: torch.Tensor | None = None,
    context: ContextOptions | None = None,
    dit_low: torch.nn.Module | None = None,
    cfg_low: float | None = None,
    boundary: float | None = None,
    callback: Callback | None = None,
    cancel: Callable[[], bool] | None = None,
    batch_cfg: bool = True,
) -> torch.Tensor:
    """Denoise seeded noise into a RAW latent [1, C, T, h, w] (float32, VACE reference frames removed).

    latents: optional RAW latent of that shape to start from (video-to-video): it is noised to the
    first sigma of the schedule (the last ``int(steps * denoise)`` steps of ``steps``); without it
    sampling starts from pure noise. dit_low: Wan2.2 A14B low-noise expert, run below ``boundary``
    (default 0.875, or 0.9 for image-conditioned models) with ``cfg_low`` (default ``cfg``).
    callback(step, total, preview): after each step, ``step`` counting from 1; preview is the
    predicted clean RAW latent. cancel() -> True stops with ``samplers.Cancelled``.
    """
    if sampler not in SAMPLERS:
        raise WanInputError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    if not isinstance(image_embeds, VideoConditioning):
        raise WanInputError(f"image_embeds must be a VideoConditioning, got {type(image_embeds).__name__}")
    if text_embeds.negative is None and float(cfg) != 1.0:
        raise WanInputError(f"cfg={cfg} needs a negative prompt embedding; encode one (it may be empty) or set cfg=1")
    device = _device(dit)
    shape = image_embeds.latent_shape()
    out_dim = getattr(getattr(dit, "cfg", None), "out_dim", shape[1])
    if out_dim != shape[1]:
        raise WanInputError(f"the DiT denoises {out_dim}-channel latents but the conditioning was built for "
                            f"{shape[1]} channels (wrong VAE for this model?)")
    if latents is not None and tuple(latents.shape) != shape:
        raise WanInputError(f"latents of shape {tuple(latents.shape)} do not match the conditioning's {shape} "
                            f"({image_embeds.width}x{image_embeds.height}, {image_embeds.num_frames} frames)")

    schedule = SAMPLER_SCHEDULES[sampler]
    sigmas = get_sigmas(steps, shift, denoise, schedule=schedule)
    timestep_of = _timestep_lookup(sigmas, get_timesteps(steps, shift, denoise, schedule=schedule))

    generator = make_generator(seed)
    noise = randn_like_cpu(shape, generator, device)
    if latents is not None:
        x = noise_latents(normalize_latent(latents.to(device=device, dtype=torch.float32)), noise, sigmas[0])
    else:
        x = noise

    pos, neg = _conds(text_embeds, image_embeds, device)
    call = make_dit_call(dit, timestep_of, shape[2])
    model = make_cfg_denoiser(call, pos, neg, cfg, batch=batch_cfg)
    if dit_low is not None:
        if boundary is None:
            boundary = BOUNDARY_I2V if image_embeds.y is not None else BOUNDARY_T2V
        call_low = make_dit_call(dit_low, timestep_of, shape[2])
        low = make_cfg_denoiser(call_low, pos, neg, cfg if cfg_low is None else cfg_low, batch=batch_cfg)
        model = make_expert_switch(model, low, boundary)
    if context is not None:
        model = make_context_denoiser(model, context, shape[2], sigmas)

    trim = image_embeds.trim_latent

    def finish(z: torch.Tensor) -> torch.Tensor:
        return denormalize_latent(_hold_fixed(z, pos)[:, :, trim:])

    step_callback = None
    if callback is not None:
        def step_callback(i: int, total: int, x0: torch.Tensor) -> None:
            callback(i + 1, total, finish(x0.float()))

    x = SAMPLERS[sampler](model, x, sigmas, callback=step_callback, cancel=cancel, generator=generator)
    return finish(x.float())
