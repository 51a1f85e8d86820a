"""Wan Sampler: text and image conditioning -> a denoised RAW latent (ComfyUI LATENT) via
``wan.job.sample.sample_video``, with ComfyUI's progress bar, latent previews and cancel.

The node turns its inputs into ``SamplingOptions`` and ``RunOptions`` and places the models on
ComfyUI's compute device; everything else (LoRAs chosen on the model loader, applied for the run
only so graphs with and without them share one model; step cache; Enhance-A-Video; context windows;
the Wan2.2 experts) is ``sample_video``'s.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from ._notices import showing_notices
from ._common import CATEGORY, WANCONTEXT, WANIMAGEEMBEDS, WANMODEL, WANTEXTEMBEDS, cancel_check, main_device, offload_device, on_device

from ..wan.sampling.noise import NOISE_STREAMS
from ..wan.sampling.samplers import SAMPLERS  # the library's lists, so both stay in step
from ..wan.sampling.schedules import SCHEDULERS
from ..wan.values import SEED_RANGE, STEPS_RANGE

OOM_ADVICE = (
    "Wan Sampler ran out of memory. To fit: connect Wan Block Swap Options to the model loader "
    "(blocks_to_swap 10-40), pick a smaller quant (a Q4_K or Q3_K GGUF, or fp8_e4m3fn instead of bf16), "
    "or lower the size or frame count; for the decode that follows, turn on tiling in Wan VAE Decode."
)

log = logging.getLogger(__name__)

MAX_SEED = SEED_RANGE[1]


def _progress(total: int, latent_channels: int):
    """callback(step, total, raw_x0) for sample_video that drives ComfyUI's progress bar and preview."""
    import comfy.latent_formats
    import comfy.model_management as mm
    import comfy.utils
    import latent_preview

    from ..wan.job.conditioning import normalize_latent

    bar = comfy.utils.ProgressBar(total)
    fmt = comfy.latent_formats.Wan22() if latent_channels == 48 else comfy.latent_formats.Wan21()
    try:
        previewer = latent_preview.get_previewer(mm.get_torch_device(), fmt)
    except Exception:  # previews are a nicety; never fail a job over them
        log.debug("Wan: no latent previewer", exc_info=True)
        previewer = None

    def callback(step: int, steps: int, x0) -> None:
        preview = None
        if previewer is not None:
            try:  # ComfyUI's RGB factors are for the model-space (normalised) latent
                preview = previewer.decode_latent_to_preview_image("JPEG", normalize_latent(x0.float()))
            except Exception:
                log.debug("Wan: preview failed", exc_info=True)
        bar.update_absolute(step, steps, preview)

    return callback


LAZY = ("model", "text_embeds", "image_embeds", "model_low")  # evaluated only once the options check out


def _sampling(steps, cfg, shift, seed, sampler, denoise, scheduler, sigmas, noise, expert_options, guidance_options):
    from ..wan.job.options import SamplingOptions

    return SamplingOptions(steps=steps, cfg=cfg, shift=shift, seed=seed, sampler=sampler, denoise=denoise,
                           scheduler=scheduler, sigmas=sigmas, noise=None if noise == "default" else noise,
                           **(expert_options or {}), **(guidance_options or {}))


class WanSampler:
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("samples",)
    FUNCTION = "sample"
    DESCRIPTION = "Denoises a Wan video latent (flow matching); decode it with Wan VAE Decode or ComfyUI's VAE Decode."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (WANMODEL, {"lazy": True}),
                "text_embeds": (WANTEXTEMBEDS, {"lazy": True}),
                "image_embeds": (WANIMAGEEMBEDS, {"tooltip": "Size, length and task conditioning.", "lazy": True}),
                "steps": ("INT", {"default": 30, "min": STEPS_RANGE[0], "max": STEPS_RANGE[1]}),
                "cfg": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 30.0, "step": 0.01,
                                  "tooltip": "Classifier-free guidance; 1 skips the negative prompt."}),
                "shift": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 1000.0, "step": 0.01,
                                    "tooltip": "Sigma shift (5 for T2V, 3 for 480p I2V)."}),
                "seed": ("INT", {"default": 0, "min": SEED_RANGE[0], "max": MAX_SEED}),
                "sampler": (list(SAMPLERS), {"default": "unipc"}),
                "denoise_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                               "tooltip": "Below 1 with samples: video-to-video."}),
            },
            "optional": {
                "samples": ("LATENT", {"tooltip": "A latent to start from (video-to-video)."}),
                "context_options": (WANCONTEXT,),
                "model_low": (WANMODEL, {"tooltip": "Wan2.2 A14B: the low-noise expert.", "lazy": True}),
                "cache_args": ("WANCACHEARGS", {"tooltip": "From Wan Step Cache Args (skips steps)."}),
                "feta_args": ("WANFETAARGS", {"tooltip": "From Wan Enhance-A-Video Args."}),
                "scheduler": (list(SCHEDULERS), {"default": "default", "tooltip":
                              "Sigma grid: default = the sampler's own (diffusers/official); ComfyUI's "
                              "schedulers (simple, beta, ...) equal its KSampler's for this shift."}),
                "sigmas": ("SIGMAS", {"tooltip": "ComfyUI sigmas (BasicScheduler, SplitSigmas, ...), ending at 0; "
                                                 "replace steps, shift, scheduler and denoise_strength."}),
                "noise": (["default", *NOISE_STREAMS], {
                    "default": "default",
                    "tooltip": "Noise drawn while sampling: comfy (as ComfyUI's KSampler for the seed) or "
                               "diffusers (one CPU stream); default: comfy for ComfyUI's sampler names, "
                               "diffusers for unipc, euler, dpm++_2m and lcm."}),
                "expert_options": ("WANEXPERTS", {"tooltip": "From Wan Expert Options (Wan2.2 A14B switch, "
                                                             "low-noise cfg/shift/sampler)."}),
                "guidance_options": ("WANGUIDANCE", {"tooltip": "From Wan Guidance Options (cfg per step, "
                                                                "CFG-Zero*, skip-layer guidance, NAG)."}),
                "multi_gpu": ("WANMULTIGPU", {"tooltip": "From Wan Multi-GPU: run this job over several GPUs."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, scheduler=None):
        if scheduler is not None and scheduler not in SCHEDULERS:
            return f"unknown scheduler {scheduler!r}; expected one of {', '.join(SCHEDULERS)}"
        return True

    def check_lazy_status(self, steps, cfg, shift, seed, sampler, denoise_strength, scheduler="default", sigmas=None,
                          noise="default", expert_options=None, guidance_options=None, **inputs):
        """Run by ComfyUI before the models and embeddings (lazy inputs) are made: the sampling options,
        linked values included, are checked here, so a bad switch step, cfg list, boundary or
        scheduler fails before any model loads. Returns the lazy inputs still to evaluate; an input
        that is not connected is absent from ``inputs``."""
        from ..wan.finite import check_tensor
        from ..wan.job.sample import check_experts

        if isinstance(inputs.get("samples"), dict):  # before any model loads
            check_tensor("the start latent (samples)", inputs["samples"].get("samples"))
        sampling = _sampling(steps, cfg, shift, seed, sampler, denoise_strength, scheduler, sigmas, noise,
                             expert_options, guidance_options)
        check_experts(sampling, "model_low" in inputs)
        return [name for name in LAZY if name in inputs and inputs[name] is None]

    @showing_notices  # a LoRA that partly matches an expert, a size rounded for TI2V-5B
    def sample(self, model, text_embeds, image_embeds, steps, cfg, shift, seed, sampler, denoise_strength,
               samples=None, context_options=None, model_low=None, cache_args=None, feta_args=None,
               scheduler="default", sigmas=None, noise="default", expert_options=None, guidance_options=None,
               multi_gpu=None):
        from ..wan.errors import WanInputError
        from ..wan.job import sample as job_sample
        from ..wan.job.conditioning import t2v_conditioning
        from ..wan.job.conditioning_fun import fit_to_model
        from ..wan.job.options import RunOptions
        from ..wan.weights.lora import HIGH_NOISE, LOW_NOISE, check_loras

        # The node's one check of what it received (steps, seed, schedule ... linked values too, see
        # _common): check_lazy_status ran it before the models were made; run it again for callers
        # that call this function directly, still before any model work.
        sampling = _sampling(steps, cfg, shift, seed, sampler, denoise_strength, scheduler, sigmas, noise,
                             expert_options, guidance_options)
        channels = model.cfg.latent_channels
        cond = image_embeds
        if (cond.pose_latents is not None or cond.face_pixels is not None) and not model.cfg.is_animate:
            from ..wan.errors import WanFileError

            raise WanFileError(model.path or model.name, f"image_embeds come from Wan Animate Embeds but this is "
                               f"{model.cfg.variant}, not the Wan 2.2 Animate model")
        if getattr(cond, "sound", None) is not None and not getattr(model.cfg, "is_s2v", False):
            from ..wan.errors import WanFileError

            raise WanFileError(model.path or model.name, f"image_embeds come from Wan Sound Embeds but this is "
                               f"{model.cfg.variant}, not the Wan 2.2 S2V model")
        if cond.humo is not None and not model.cfg.is_humo:
            from ..wan.errors import WanFileError

            raise WanFileError(model.path or model.name, f"image_embeds come from Wan HuMo Embeds but this is "
                               f"{model.cfg.variant}, not a HuMo model (humo_1.7B / humo_17B)")
        plain = all(getattr(cond, k) is None for k in ("y", "clip_fea", "vace_context", "fixed_latent"))
        if plain and cond.latent_channels != channels:  # Wan Empty Embeds default to the Wan2.1 latent
            cond = t2v_conditioning(cond.width, cond.height, cond.num_frames, channels)
        fit_to_model(cond, model.cfg, model.name)  # a Fun embeds / model mismatch, named before any model loads
        latents = None
        if samples is not None:
            latents = samples["samples"]
            if latents.ndim != 5:
                raise WanInputError(f"samples must be a Wan video latent [B, C, T, h, w], got {tuple(latents.shape)}")
            latents = latents[:1]
        elif denoise_strength < 1.0 and sigmas is None:
            log.warning("Wan Sampler: denoise_strength %.2f without samples starts from pure noise", denoise_strength)

        same_expert = model_low is not None and model_low.dit is model.dit
        if same_expert and tuple(model_low.loras) != tuple(model.loras):
            log.warning("Wan Sampler: model_low is the same model as model; its LoRAs are those of model")
        loras_low = () if model_low is None or same_expert else tuple(model_low.loras)
        run = RunOptions(loras=tuple(model.loras), loras_low=loras_low, cache=cache_args, feta=feta_args,
                         context=context_options, offload_device=offload_device(),
                         sdpa_edge_steps=model.sdpa_edge_steps)
        # how each LoRA matches (the loaders read no weights, and cannot know which expert they load)
        if model_low is not None and not same_expert:
            check_loras(model.dit, run.loras, HIGH_NOISE)
            check_loras(model_low.dit, run.loras_low, LOW_NOISE)
        elif run.loras:
            check_loras(model.dit, run.loras)
        if multi_gpu is not None:  # the ranks load the model files themselves
            from .multi_gpu import run_on_group

            return ({"samples": run_on_group(multi_gpu, model, model_low, text_embeds, cond, sampling, run,
                                             latents).cpu()},)
        done = [0]
        progress = _progress(job_sample.run_schedule(sampling).steps, channels)

        def callback(step, total, x0):
            done[0] = step
            progress(step, total, x0)

        with contextlib.ExitStack() as stack:
            for m in (model, model_low):
                if m is not None and not m.block_swap:  # a block-swapped model streams its blocks in itself
                    stack.enter_context(on_device(m.dit, main_device()))
            try:
                latent = job_sample.sample_video(
                    model.dit, text_embeds, cond, sampling, run, dit_low=None if model_low is None else model_low.dit,
                    latents=latents, callback=callback, cancel=cancel_check(),
                )
            except torch.OutOfMemoryError as error:
                # Re-raised as the same type so ComfyUI still unloads models and reports an OOM.
                raise torch.OutOfMemoryError(f"{error}\n{OOM_ADVICE}") from error
            except Exception as error:
                if type(error).__name__ == "InterruptProcessingException":
                    log.info("Wan Sampler: cancelled after step %d", done[0])
                raise
        return ({"samples": latent.cpu()},)


NODE_CLASS_MAPPINGS = {"WanSampler": WanSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"WanSampler": "Wan Sampler"}
