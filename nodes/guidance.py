"""Option nodes for the Wan Sampler's experts and guidance: each returns ``SamplingOptions`` fields
(a dict) that the sampler applies over its own widgets, so a graph without them runs as before.

Wan Expert Options: where the Wan2.2 A14B experts switch (a step, or a sigma boundary), and the
low-noise expert's cfg, shift and sampler. Wan Guidance Options: a cfg per step, CFG-Zero*,
skip-layer guidance (ComfyUI's SkipLayerGuidanceDiT) and NAG.
"""

from __future__ import annotations

from ._common import CATEGORY

from ..wan.sampling.samplers import SAMPLERS  # the library's list, so both stay in step

WANEXPERTS, WANGUIDANCE = "WANEXPERTS", "WANGUIDANCE"


class SamplerFields(dict):
    """What these nodes output: Wan Sampler options by field name. A type of its own, so that a bare
    JSON object sent to the socket over the API is told apart (see _validate.socket_problem)."""
SAME = "same as sampler"


def _numbers(text: str, kind, name: str) -> tuple:
    from ..wan.errors import WanInputError

    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        raise WanInputError(f"{name}: expected numbers separated by commas, got {text!r}") from None


class WanExpertOptions:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANEXPERTS,)
    RETURN_NAMES = ("expert_options",)
    FUNCTION = "make"
    DESCRIPTION = ("Wan2.2 A14B experts: switch to the low-noise expert at a step (switch_step > 0; the Lightning "
                   "recipe: 4 steps split at 2) or at a sigma boundary; cfg, shift and sampler of the low-noise "
                   "expert (a shift or sampler of its own runs it as a second sampler, as two KSamplerAdvanced do).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "switch_step": ("INT", {"default": 0, "min": 0, "max": 1000,
                                    "tooltip": "Low-noise expert from this step on (1..steps-1); 0: at the boundary."}),
            "boundary": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.999, "step": 0.001,
                                   "tooltip": "Sigma where the low-noise expert takes over; 0: the official one "
                                              "(0.875 T2V, 0.9 I2V). Not with switch_step."}),
            "cfg_low": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 30.0, "step": 0.01,
                                  "tooltip": "CFG of the low-noise expert; -1: the sampler's cfg."}),
            "shift_low": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.01,
                                    "tooltip": "Shift of the low-noise expert's schedule; 0: the sampler's shift."}),
            "sampler_low": ([SAME, *SAMPLERS], {"default": SAME}),
        }}

    def make(self, switch_step, boundary, cfg_low, shift_low, sampler_low):
        fields = {}
        if switch_step > 0:
            fields["switch_step"] = switch_step
        if boundary > 0:
            fields["boundary"] = boundary
        if cfg_low >= 0:
            fields["cfg_low"] = cfg_low
        if shift_low > 0:
            fields["shift_low"] = shift_low
        if sampler_low != SAME:
            fields["sampler_low"] = sampler_low
        return (SamplerFields(fields),)


class WanGuidanceOptions:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANGUIDANCE,)
    RETURN_NAMES = ("guidance_options",)
    FUNCTION = "make"
    DESCRIPTION = ("A cfg per step (e.g. '2, 1, 1, 1'), CFG-Zero* (ComfyUI's CFGZeroStar, plus zero-init steps), "
                   "skip-layer guidance (ComfyUI's SkipLayerGuidanceDiT) and NAG (the negative prompt at cfg 1).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "cfg_per_step": ("STRING", {"default": "", "tooltip": "One cfg per step, comma separated; empty: the "
                                                                  "sampler's cfg."}),
            "cfg_zero_star": ("BOOLEAN", {"default": False}),
            "zero_init_steps": ("INT", {"default": 0, "min": 0, "max": 1000,
                                        "tooltip": "CFG-Zero*: steps at the start that keep the sample as it is."}),
            "slg_layers": ("STRING", {"default": "", "tooltip": "Blocks skipped by skip-layer guidance, e.g. '9' "
                                                                "or '7, 8, 9'; empty: off."}),
            "slg_scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 10.0, "step": 0.1}),
            "slg_start_percent": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001}),
            "slg_end_percent": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 1.0, "step": 0.001}),
            "slg_rescaling_scale": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            "nag_scale": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                    "tooltip": "NAG: Z+ + scale (Z+ - Z-) in cross-attention; 0: off."}),
            "nag_tau": ("FLOAT", {"default": 2.5, "min": 0.01, "max": 100.0, "step": 0.01}),
            "nag_alpha": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    def make(self, cfg_per_step, cfg_zero_star, zero_init_steps, slg_layers, slg_scale, slg_start_percent,
             slg_end_percent, slg_rescaling_scale, nag_scale, nag_tau, nag_alpha):
        from ..wan.sampling.cfg_zero import CFGZeroStar
        from ..wan.sampling.guidance import GuidanceOptions
        from ..wan.sampling.nag import NAGOptions
        from ..wan.sampling.slg import SkipLayerGuidance

        layers = _numbers(slg_layers, int, "slg_layers")
        guidance = GuidanceOptions(
            cfg_zero_star=CFGZeroStar(zero_init_steps) if cfg_zero_star or zero_init_steps else None,
            slg=SkipLayerGuidance(layers, slg_scale, slg_start_percent, slg_end_percent, slg_rescaling_scale)
            if layers else None,
            nag=NAGOptions(nag_scale, nag_tau, nag_alpha) if nag_scale > 0 else None,
        )
        fields = {"guidance": guidance}
        cfgs = _numbers(cfg_per_step, float, "cfg_per_step")
        if cfgs:
            fields["cfg_per_step"] = cfgs
        return (SamplerFields(fields),)


NODE_CLASS_MAPPINGS = {"WanExpertOptions": WanExpertOptions, "WanGuidanceOptions": WanGuidanceOptions}
NODE_DISPLAY_NAME_MAPPINGS = {"WanExpertOptions": "Wan Expert Options", "WanGuidanceOptions": "Wan Guidance Options"}
