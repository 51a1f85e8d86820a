"""Wan Unload Models: gives back the memory our models hold, mid-graph or at its end.

It empties the loaders' model cache (``_common.MODEL_CACHE``), asks ComfyUI to unload every model
it holds loaded (ours are listed there: ``comfy.model_management.unload_all_models``, as POST /free
does), collects the garbage and returns freed host memory to the system, block swap's pinned
copies included (``wan.runtime.host_memory``). A model that a cached node output still refers to
(a VAE or text encoder from an earlier node) lives until ComfyUI's node cache lets go of it; the
DiT loaders' outputs hold no weights, so the diffusion models go at once.
"""

from __future__ import annotations

import logging

from ..wan.runtime.host_memory import release_host_memory
from . import _common
from ._common import CATEGORY

log = logging.getLogger(__name__)


class AnyType(str):
    """A socket type every other type matches (ComfyUI compares socket types with ``!=``)."""

    def __ne__(self, other):
        return False


ANY = AnyType("*")


class WanUnloadModels:
    CATEGORY = CATEGORY
    OUTPUT_NODE = True
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("value",)
    OUTPUT_TOOLTIPS = ("The input, passed on once the models are unloaded (to order what runs after).",)
    FUNCTION = "unload"
    DESCRIPTION = ("Unloads every Wan model (and ComfyUI's, as the Free model button) and gives their RAM back, "
                   "block swap's pinned memory included.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"optional": {"value": (ANY, {"tooltip": "Anything: the node runs after whatever made it."})}}

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")  # never cached: each run unloads again

    def unload(self, value=None):
        import comfy.model_management as mm

        dropped = _common.MODEL_CACHE.clear()
        mm.unload_all_models()
        release_host_memory()
        mm.soft_empty_cache()
        text = f"Wan: unloaded the models ({dropped} cached)"
        log.info(text)
        return {"ui": {"text": [text]}, "result": (value,)}


NODE_CLASS_MAPPINGS = {"WanUnloadModels": WanUnloadModels}
NODE_DISPLAY_NAME_MAPPINGS = {"WanUnloadModels": "Wan Unload Models"}
