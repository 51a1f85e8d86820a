"""Wan Sampler: text and image conditioning -> a denoised RAW latent (ComfyUI LATENT) via
``wan.job.sample.sample_video``, with ComfyUI's progress bar, latent previews and cancel.

LoRAs chosen on the model loader are applied to the shared base DiT for the duration of the run
only (``wan.weights.lora.apply.apply_loras``), so graphs with and without them share one model.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from ._common import CATEGORY, WANCONTEXT, WANIMAGEEMBEDS, WANMODEL, WANTEXTEMBEDS, cancel_check, main_device, offload_device, on_device

OOM_ADVICE = (
    "Wan Sampler ran out of memory. To fit: connect Wan Block Swap Options to the model loader "
    "(blocks_to_swap 10-40), pick a smaller quant (a Q4_K or Q3_K GGUF, or fp8_e4m3fn instead of bf16), "
    "or lower the size or frame count; for the decode that follows, turn on tiling in Wan VAE Decode."
)

log = logging.getLogger(__name__)

SAMPLER_NAMES = ("unipc", "euler", "dpm++_2m", "lcm")
MAX_SEED = 0xFFFFFFFFFFFFFFFF


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
                "model": (WANMODEL,),
                "text_embeds": (WANTEXTEMBEDS,),
                "image_embeds": (WANIMAGEEMBEDS, {"tooltip": "Size, length and task conditioning."}),
                "steps": ("INT", {"default": 30, "min": 1, "max": 1000}),
                "cfg": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 30.0, "step": 0.01,
                                  "tooltip": "Classifier-free guidance; 1 skips the negative prompt."}),
                "shift": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 1000.0, "step": 0.01,
                                    "tooltip": "Sigma shift (5 for T2V, 3 for 480p I2V)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "sampler": (list(SAMPLER_NAMES), {"default": "unipc"}),
                "denoise_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                               "tooltip": "Below 1 with samples: video-to-video."}),
            },
            "optional": {
                "samples": ("LATENT", {"tooltip": "A latent to start from (video-to-video)."}),
                "context_options": (WANCONTEXT,),
                "model_low": (WANMODEL, {"tooltip": "Wan2.2 A14B: the low-noise expert."}),
                "cache_args": ("WANCACHEARGS", {"tooltip": "From Wan Step Cache Args (skips steps)."}),
                "feta_args": ("WANFETAARGS", {"tooltip": "From Wan Enhance-A-Video Args."}),
            },
        }

    def sample(self, model, text_embeds, image_embeds, steps, cfg, shift, seed, sampler, denoise_strength,
               samples=None, context_options=None, model_low=None, cache_args=None, feta_args=None):
        from ..wan.job.conditioning import t2v_conditioning
        from ..wan.errors import WanInputError
        from ..wan.job.sample import sample_video
        from ..wan.runtime.apply import sampling_options
        from ..wan.weights.lora.parse import apply_loras  # (lora_apply imported first is circular)

        channels = model.cfg.latent_channels
        cond = image_embeds
        plain = all(getattr(cond, k) is None for k in ("y", "clip_fea", "vace_context", "fixed_latent"))
        if plain and cond.latent_channels != channels:  # Wan Empty Embeds default to the Wan2.1 latent
            cond = t2v_conditioning(cond.width, cond.height, cond.num_frames, channels)
        latents = None
        if samples is not None:
            latents = samples["samples"]
            if latents.ndim != 5:
                raise WanInputError(f"samples must be a Wan video latent [B, C, T, h, w], got {tuple(latents.shape)}")
            latents = latents[:1]
        elif denoise_strength < 1.0:
            log.warning("Wan Sampler: denoise_strength %.2f without samples starts from pure noise", denoise_strength)
        text = text_embeds
        if float(cfg) == 1.0:
            text = text._replace(negative=None)  # one DiT pass per step

        done = [0]
        run_steps = max(int(steps * denoise_strength), 1)  # the last steps of the schedule
        progress = _progress(run_steps, channels)

        def callback(step, total, x0):
            done[0] = step
            progress(step, total, x0)

        with contextlib.ExitStack() as stack:
            dit_low = None
            for i, m in enumerate((model, model_low)):
                if m is None or (i == 1 and m.dit is model.dit):
                    continue
                if not m.block_swap:  # a block-swapped model streams its blocks in itself
                    stack.enter_context(on_device(m.dit, main_device()))
                if m.loras:
                    stack.enter_context(apply_loras(m.dit, m.loras, warn=False))
                if cache_args is not None or feta_args is not None:
                    stack.enter_context(sampling_options(m.dit, cache_args, feta_args, total_steps=run_steps,
                                                         offload_device=offload_device()))
            if model_low is not None:
                dit_low = model_low.dit
            try:
                latent = sample_video(
                    model.dit, text, cond, steps=steps, cfg=cfg, shift=shift, seed=seed, sampler=sampler,
                    denoise=denoise_strength, latents=latents, context=context_options, dit_low=dit_low,
                    callback=callback, cancel=cancel_check(),
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
