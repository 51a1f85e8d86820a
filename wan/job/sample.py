"""``sample_video``: seeded noise -> denoised latent for any Wan task, the one run path. It puts
together what rides on the model for a run (LoRAs, step cache, Enhance-A-Video), the denoiser chain
(DiT call, CFG, the Wan2.2 expert switch, context windows) and the sampler.

The chain, innermost first, every layer receiving the sampler's ``Step``:
DiT forward (plain, or ``StepCache``; wrapped by Enhance-A-Video and NAG) -> ``make_dit_call``
(conditioning, timestep) -> CFG per expert (a cfg per step; CFG-Zero*; skip-layer guidance, its pass
through ``slg.skip_forward``) -> expert switch (at a sigma boundary or a step) -> context windows ->
``samplers.flow_to_x0`` -> sampler. With a sampler or shift of its own, the low-noise expert runs a
second sampler loop after the switch step (``_run_experts``).

Timesteps: the DiT is called with the timestep its reference pipeline passes for each sigma of the
chosen grid (``schedules.build_schedule``: diffusers' integer timesteps for unipc and dpm++_2m's
default grids, float for euler/lcm; float sigma * 1000 for ComfyUI's schedulers and explicit
sigmas/timesteps), handed to the sampler with the sigmas, so a run reproduces its reference step
for step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable

import torch

from .conditioning import PromptEmbeds, VideoConditioning, denormalize_latent, normalize_latent
from .conditioning_fun import fit_to_model
from .conditioning_phantom import check_phantom
from .conditioning_s2v import check_sound
from .conditioning_humo import check_humo
from .dit_conds import check_animate, dit_conds, token_frames
from .memory import check_sampling, plan_job, size_inputs
from .options import RunOptions, SamplingOptions
from ..errors import WanInputError
from ..finite import check_tensor, nonfinite
from ..parallel.job import check_parallel, parallel_run
from ..runtime.cache import StepCache
from ..runtime.cancel import cancel_hook, current_hook
from ..runtime.edge_steps import use_sdpa_edges
from ..runtime.feta import use_feta
from ..sampling.dual_cfg import make_dual_cfg_denoiser
from ..sampling.context import make_context_denoiser, slice_frames
from ..sampling.loop import NonFiniteStep, finite_checked
from ..sampling.experts import BOUNDARY_I2V, BOUNDARY_T2V, make_expert_switch, offset_steps, switch_index
from ..sampling.guidance import GuidanceOptions, make_cfg_denoiser
from ..sampling.nag import use_nag
from ..sampling.slg import skip_forward
from ..sampling.noise import make_generator, noise_latents, randn_like_cpu
from ..sampling.samplers import SAMPLER_NOISE, SAMPLER_SCHEDULES, SAMPLERS, flow_to_x0
from ..sampling.schedules import Schedule, build_schedule
from ..sampling.step import Step
from ..weights.lora import apply_loras

Callback = Callable[[int, int, torch.Tensor], None]
# forward(step, x, t, context, **kw) -> v: one DiT evaluation, with the runtime options of the run
Forward = Callable[..., torch.Tensor]

log = logging.getLogger(__name__)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _hold_fixed(x: torch.Tensor, cond: dict) -> torch.Tensor:
    """Latent frames where ``denoise_mask`` is 0 replaced by ``fixed_latent`` (Wan2.2 TI2V)."""
    mask = cond.get("denoise_mask")
    if mask is None:
        return x
    return cond["fixed_latent"].to(x.dtype) * (1 - mask) + x * mask


def plain_forward(dit: torch.nn.Module) -> Forward:
    """The DiT forward of a run without step caching."""
    return lambda step, x, t, context, **kw: dit(x, t, context, **kw)


def make_dit_call(forward: Forward, num_frames: int):
    """``fn(x, step, cond, window=None) -> v``: one DiT evaluation through ``forward`` with a
    conditioning dict from ``_conds`` (sliced to the context window's latent frames when one is
    given) at the step's timestep."""

    def call(x: torch.Tensor, step: Step, cond: dict, window=None) -> torch.Tensor:
        if window is not None:
            vace = cond.get("vace_context")  # [B, N, 96, T, h, w]: frames on dim 3
            cond = slice_frames(cond, window, num_frames)
            if vace is not None:
                cond = {**cond, "vace_context": vace[:, :, :, list(window)]}
        t = step.timestep.to(device=x.device, dtype=torch.float32)
        mask = cond.get("denoise_mask")
        if mask is not None:
            x = _hold_fixed(x, cond)
            # per-frame timesteps, 0 on held frames (ComfyUI's WAN22.process_timestep)
            t = mask.mean(dim=(1, 3, 4)).expand(x.shape[0], -1) * t
        kw = {k: cond[k] for k in ("clip_fea", "y", "vace_context", "vace_strength", "pose_latents", "face_pixels",
                                   "camera", "reference", "subject", "sound", "audio_embed", "reference_latent")
              if k in cond}
        return forward(step, x, t, cond["context"], **kw).float()

    return call


def check_experts(s: SamplingOptions, has_low: bool) -> None:
    """The expert options against whether a low-noise expert is given; needs no model, so callers
    (the sampler node) can run it before any model loads."""
    if not has_low and (s.switch_step is not None or s.split_sampling):
        raise WanInputError("switch_step, shift_low and sampler_low are options of the Wan2.2 A14B experts: "
                            "give the low-noise expert (dit_low / model_low) too")


def _check(dit, dit_low, text: PromptEmbeds, image: VideoConditioning, s: SamplingOptions, latents, shape) -> None:
    if not isinstance(s, SamplingOptions):
        raise WanInputError(f"sampling must be a SamplingOptions, got {type(s).__name__}")
    if not isinstance(image, VideoConditioning):
        raise WanInputError(f"image_embeds must be a VideoConditioning, got {type(image).__name__}")
    if text.negative is None and s.needs_negative:
        raise WanInputError(f"cfg={s.cfg_per_step or s.cfg} (or NAG) needs a negative prompt embedding; encode one "
                            "(it may be empty) or set cfg=1")
    check_experts(s, dit_low is not None)
    slg = s.guidance.slg if s.guidance is not None else None
    for module in (dit, dit_low):
        blocks = getattr(module, "blocks", None)
        if slg is not None and blocks is not None:
            slg.check_model(len(blocks))
    out_dim = getattr(getattr(dit, "cfg", None), "out_dim", shape[1])
    if out_dim != shape[1]:
        raise WanInputError(f"the DiT denoises {out_dim}-channel latents but the conditioning was built for "
                            f"{shape[1]} channels (wrong VAE for this model?)")
    if latents is not None and tuple(latents.shape) != shape:
        raise WanInputError(f"latents of shape {tuple(latents.shape)} do not match the conditioning's {shape} "
                            f"({image.width}x{image.height}, {image.num_frames} frames)")
    check_tensor("the start latent (samples)", latents)
    if image.pose_latents is not None or image.face_pixels is not None:
        if not getattr(getattr(dit, "cfg", None), "is_animate", False):
            raise WanInputError("the conditioning has pose/face videos (Wan Animate) but the model is "
                                f"{getattr(getattr(dit, 'cfg', None), 'variant', 'not an Animate DiT')}: "
                                "load the Wan 2.2 Animate model")


def plan_args(dit, dit_low, has_negative: bool, image: VideoConditioning, s: SamplingOptions,
              run: RunOptions) -> dict:
    """The arguments of ``memory.plan_job`` / ``job_plan`` for this run (the prompt encode plans
    the same job before its embeddings exist: ``has_negative``)."""
    experts = _experts(dit, dit_low, run)
    clip = image.clip_fea
    vace = image.vace_context
    return dict(experts=[m for m, _loras in experts], shape=token_frames(image),
                batch=2 if s.batch_cfg and has_negative and s.needs_negative else 1, budget=run.memory_budget,
                image_tokens=0 if clip is None else int(clip.shape[-2]),
                vace_contexts=0 if vace is None else (int(vace.shape[1]) if vace.ndim == 6 else 1),
                job=size_inputs(image.width, image.height, image.num_frames),
                loras=[loras for _m, loras in experts])


def plan_experts(dit, dit_low, text: PromptEmbeds, image: VideoConditioning, s: SamplingOptions,
                 run: RunOptions):
    """The memory plan of this run (``memory.plan_job``) applied to block swap "auto" experts before
    any work: a second expert, a LoRA or a bigger size re-places their blocks."""
    plan_job(**plan_args(dit, dit_low, text.negative is not None, image, s, run))


def _experts(dit, dit_low, run: RunOptions) -> list[tuple[torch.nn.Module, tuple]]:
    """(model, its LoRAs) for each distinct expert model."""
    if dit_low is None:
        return [(dit, tuple(run.loras))]
    if dit_low is dit:
        if run.loras_low and tuple(run.loras_low) != tuple(run.loras):
            raise WanInputError("the low-noise expert is the same model as the high-noise one, so it cannot "
                                "carry other LoRAs (loras_low)")
        return [(dit, tuple(run.loras))]
    return [(dit, tuple(run.loras)), (dit_low, tuple(run.loras_low))]


def run_schedule(s: SamplingOptions) -> Schedule:
    """The sigmas and DiT timesteps a run with these options takes (``schedules.build_schedule``)."""
    return build_schedule(s.steps, s.shift, s.denoise, s.scheduler, sampler_grid=SAMPLER_SCHEDULES[s.sampler],
                          sigmas=s.sigmas, timesteps=s.timesteps)


def _guided(s: SamplingOptions, guide: GuidanceOptions, forward, skip, pos, neg, frames: int, low: bool,
            shift: float, subject_cfg: float | None = None):
    """The CFG layer (with CFG-Zero* and skip-layer guidance when asked) of one expert; with
    Phantom's subject frames the dual CFG (``subject_cfg``)."""
    cfg = s.cfg_low if low and s.cfg_low is not None else s.cfg
    if s.cfg_per_step is not None:
        cfg = lambda step: s.cfg_of(step.index, low)  # noqa: E731
    if subject_cfg is not None:
        return make_dual_cfg_denoiser(make_dit_call(forward, frames), pos, neg, cfg, subject_cfg)
    slg_call = None if skip is None else make_dit_call(skip, frames)
    return make_cfg_denoiser(make_dit_call(forward, frames), pos, neg, cfg, batch=s.batch_cfg,
                             zero_star=guide.cfg_zero_star, slg=guide.slg, slg_call=slg_call, shift=shift)


def _run_experts(s: SamplingOptions, guide: GuidanceOptions, forwards, skips, dit, dit_low, image_embeds,
                 run: RunOptions, pos, neg, shape, x, sigmas, timesteps, step_callback, cancel,
                 sampler_kw: dict) -> torch.Tensor:
    """The denoiser chain of each expert and the sampler loop(s): one loop with the expert switch
    inside the chain, or, when the low-noise expert has its own sampler or shift, two loops split
    at the switch step, the second on the low-noise expert's own schedule (ComfyUI's two
    KSamplerAdvanced), its Steps numbered as in the whole run."""
    frames = shape[2]
    subject_cfg = image_embeds.subject_cfg if image_embeds.subject is not None else None

    def chain(module, low: bool, shift: float):
        # checked per expert, inside the switch, windows and renumbering: the error names the expert
        # and the step of the whole run
        expert = None if dit_low is None else ("low-noise expert" if low else "high-noise expert")
        return finite_checked(_guided(s, guide, forwards[id(module)], skips.get(id(module)), pos, neg, frames, low,
                                      shift, subject_cfg), expert)

    def windows(model):
        return model if run.context is None else make_context_denoiser(model, run.context, frames)

    high = chain(dit, False, s.shift)
    boundary = s.boundary
    if dit_low is not None and s.switch_step is None and boundary is None:
        boundary = BOUNDARY_I2V if image_embeds.y is not None else BOUNDARY_T2V
    if dit_low is None or not s.split_sampling:
        model = high
        if dit_low is not None:
            low = chain(dit_low, True, s.shift)
            model = make_expert_switch(high, low, boundary=None if s.switch_step is not None else boundary,
                                       switch_step=s.switch_step)
        return SAMPLERS[s.sampler](flow_to_x0(windows(model)), x, sigmas, timesteps, callback=step_callback,
                                   cancel=cancel, shift=s.shift, **sampler_kw)

    shift_low = s.shift if s.shift_low is None else s.shift_low
    sampler_low = s.sampler if s.sampler_low is None else s.sampler_low
    total = len(sigmas) - 1
    split = s.switch_step if s.switch_step is not None else switch_index(sigmas, boundary)
    if split > 0:
        x = SAMPLERS[s.sampler](flow_to_x0(windows(high)), x, sigmas[:split + 1], timesteps[:split],
                                callback=step_callback, cancel=cancel, shift=s.shift, **sampler_kw)
    if split < total:
        low_schedule = run_schedule(dataclasses.replace(s, shift=shift_low, sampler=sampler_low))
        sigmas_low, timesteps_low = low_schedule.sigmas, low_schedule.timesteps
        callback = None
        if step_callback is not None:
            def callback(i, _total, x0):
                step_callback(i + split, total, x0)
        low = offset_steps(windows(chain(dit_low, True, shift_low)), split, total)
        x = SAMPLERS[sampler_low](flow_to_x0(low), x, sigmas_low[split:], timesteps_low[split:], callback=callback,
                                  cancel=cancel, shift=shift_low, **sampler_kw)
    return x


@torch.no_grad()
def sample_video(
    dit: torch.nn.Module,
    text_embeds: PromptEmbeds,
    image_embeds: VideoConditioning,
    sampling: SamplingOptions,
    run: RunOptions | None = None,
    dit_low: torch.nn.Module | None = None,
    latents: torch.Tensor | None = None,
    callback: Callback | None = None,
    cancel: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Denoise seeded noise into a RAW latent [1, C, T, h, w] (float32, VACE reference frames removed).

    sampling: steps, cfg, shift, seed, sampler, denoise, noise stream, the schedule (``scheduler``, or
    explicit ``sigmas`` / ``timesteps`` replacing steps, scheduler and denoise: see ``run_schedule``);
    for Wan2.2 A14B ``cfg_low`` and the expert ``boundary`` (default 0.875, or 0.9 for
    image-conditioned models) or ``switch_step``, ``shift_low`` / ``sampler_low`` (the low-noise
    expert's own schedule and sampler); a cfg per step (``cfg_per_step``); ``guidance``: CFG-Zero*,
    skip-layer guidance, NAG. run: LoRAs (applied for
    this run only, then the models are restored; ``loras_low`` on ``dit_low``), step cache,
    Enhance-A-Video and context windows; None: none of them. dit_low: the Wan2.2 A14B low-noise
    expert, run below the boundary. latents: optional RAW latent of the output's shape to start from
    (video-to-video): it is noised to the first sigma of the schedule (the last ``int(steps *
    denoise)`` steps of ``steps``); without it sampling starts from pure noise (the "comfy" noise
    stream: noise times the first sigma, as ComfyUI does). callback(step, total, preview): after each step, ``step`` counting from 1; preview is the
    predicted clean RAW latent. cancel() -> True stops with ``runtime.cancel.Cancelled``, polled before
    each step and, through ``runtime.cancel``, between DiT blocks and attention chunks (None: the hook
    the caller set with ``cancel_hook``, if any).
    """
    s = sampling
    run = RunOptions() if run is None else run
    shape = image_embeds.latent_shape() if isinstance(image_embeds, VideoConditioning) else None
    _check(dit, dit_low, text_embeds, image_embeds, s, latents, shape)
    check_animate(dit, run)
    check_phantom(image_embeds, dit, run, s.guidance)
    check_sound(dit, image_embeds, run)
    check_humo(dit, image_embeds, run)
    image_embeds = fit_to_model(image_embeds, getattr(dit, "cfg", None))
    layout = run.parallel
    if layout is not None and layout.size > 1:
        check_parallel(layout, [m for m in (dit, dit_low) if m is not None], run)
        if layout.cfg > 1:  # the CFG split works on the doubled (cond, uncond) batch
            s = dataclasses.replace(s, batch_cfg=True)
    plan_experts(dit, dit_low, text_embeds, image_embeds, s, run)
    device = _device(dit)
    check_sampling(shape, device, image_embeds.width, image_embeds.height, image_embeds.num_frames)
    schedule = run_schedule(s)
    sigmas, timesteps = schedule.sigmas, schedule.timesteps

    # the initial noise is the same in both streams (ComfyUI's prepare_noise draws these numbers);
    # the sampler's later noise continues `generator` (diffusers) or is reseeded from `seed` (comfy)
    generator = make_generator(s.seed)
    noise = randn_like_cpu(shape, generator, device)
    stream = SAMPLER_NOISE[s.sampler] if s.noise is None else s.noise
    reseed = {"seed": s.seed} if stream == "comfy" else {}
    if latents is not None:
        x = noise_latents(normalize_latent(latents.to(device=device, dtype=torch.float32)), noise, sigmas[0])
    elif schedule.noise_scaled or stream == "comfy":
        # ComfyUI scales the noise to the first sigma (its empty latent stays 0: x = sigmas[0] * noise)
        x = noise_latents(torch.zeros_like(noise), noise, sigmas[0])
    else:  # diffusers starts from pure noise whatever the first sigma
        x = noise
    pos, neg = dit_conds(text_embeds, image_embeds, device)
    trim = image_embeds.trim_latent

    def finish(z: torch.Tensor) -> torch.Tensor:
        return denormalize_latent(_hold_fixed(z, pos)[:, :, trim:])

    step_callback = None
    if callback is not None:
        def step_callback(i: int, total: int, x0: torch.Tensor) -> None:
            callback(i + 1, total, finish(x0.float()))

    caches = []
    guide = s.guidance or GuidanceOptions()
    cancel = current_hook() if cancel is None else cancel
    with contextlib.ExitStack() as stack:
        stack.enter_context(cancel_hook(cancel))
        stack.enter_context(parallel_run(layout, [m for m in (dit, dit_low) if m is not None], run))
        forwards, skips = {}, {}
        for module, loras in _experts(dit, dit_low, run):
            if loras:
                stack.enter_context(apply_loras(module, loras, warn=False))
            if hasattr(module, "face_memo"):  # Animate: face tokens once per run, under its LoRAs
                stack.enter_context(module.face_memo())
            edges = stack.enter_context(use_sdpa_edges(module, run.sdpa_edge_steps))  # before FETA wraps the kernels
            wrap = stack.enter_context(use_feta(module, run.feta))
            nag = stack.enter_context(use_nag(module, guide.nag, None if neg is None else neg["context"]))
            forward = plain_forward(module)
            if run.cache is not None:
                forward = StepCache(module, run.cache, run.offload_device)
                caches.append(forward)
            forwards[id(module)] = nag(wrap(edges(forward)))
            if guide.slg is not None:
                skips[id(module)] = nag(wrap(edges(skip_forward(module, guide.slg.layers))))
        x = _run_experts(s, guide, forwards, skips, dit, dit_low, image_embeds, run, pos, neg, shape, x,
                         sigmas, timesteps, step_callback, cancel,
                         dict(generator=generator, **reseed))
    for cache in caches:
        log.info("Wan: %s", cache.stats)
    bad = nonfinite(x)
    if bad is not None:  # every model call was finite: the sampler's own arithmetic broke
        raise NonFiniteStep(f"the sampler {s.sampler} produced {bad} values in its last step: stopped")
    return finish(x.float())
