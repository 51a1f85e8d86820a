"""Wan LoRA Select: picks a LoRA file and a strength, appended to an optional upstream chain.

The chain (a tuple of (Lora, strength)) goes into Wan Model Loader's ``lora`` input, which checks
how it matches the model; the sampler applies it for the duration of a run only.
"""

from __future__ import annotations

from ..wan.weights.lora import chain_add, load_lora
from ._common import CATEGORY, MODEL_CACHE, WANLORA, full_path, identity_of, list_files


class WanLoraSelect:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANLORA,)
    RETURN_NAMES = ("lora",)
    FUNCTION = "select"
    DESCRIPTION = "Selects a Wan LoRA (ComfyUI/original, kohya, diffusers/PEFT names or diff patches) and its strength."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "lora": (list_files("loras"), {"tooltip": "From models/loras."}),
                "strength": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                       "tooltip": "Multiplier of the LoRA's delta; 0 disables it."}),
            },
            "optional": {
                "prev_lora": (WANLORA, {"tooltip": "LoRAs selected before this one (they stack)."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, lora, strength, **_):
        return f"{identity_of(lora, 'loras')} {strength}"

    def select(self, lora, strength, prev_lora=None):
        path = full_path(lora, "loras")
        parsed = MODEL_CACHE.get("lora", path, (), lambda: load_lora(path))
        return (chain_add(prev_lora, parsed, strength),)


NODE_CLASS_MAPPINGS = {"WanLoraSelect": WanLoraSelect}
NODE_DISPLAY_NAME_MAPPINGS = {"WanLoraSelect": "Wan LoRA Select"}
