"""Option nodes for memory and speed: block swap, torch.compile, step caching, Enhance-A-Video.

Each returns a small frozen options object from ``wan.runtime``; the model loader and the sampler
take them as optional inputs and hand them to ``wan.job.load`` (LoadOptions) and ``wan.job.sample`` (RunOptions).
"""

from __future__ import annotations

import dataclasses
import os

from ._common import CATEGORY

from ..wan.runtime.cache import INPUTS as CACHE_INPUTS
from ..wan.runtime.compile import BACKENDS as COMPILE_BACKENDS, MODES as COMPILE_MODES

WANBLOCKSWAPARGS = "WANBLOCKSWAPARGS"


def compile_cache_dir() -> str:
    """torch.compile's caches under ComfyUI's user folder (kept across restarts, unlike its temp
    folder, which ComfyUI empties at start), never inductor's bare /tmp default."""
    import folder_paths

    return os.path.join(folder_paths.get_user_directory(), "wan-nodes-cache")
WANCOMPILEARGS = "WANCOMPILEARGS"
WANCACHEARGS = "WANCACHEARGS"
WANFETAARGS = "WANFETAARGS"
WANSPEEDARGS = "WANSPEEDARGS"


class WanBlockSwapArgs:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANBLOCKSWAPARGS,)
    RETURN_NAMES = ("block_swap_args",)
    FUNCTION = "make"
    DESCRIPTION = ("Keep the last N transformer blocks in pinned system memory and copy each to the GPU just "
                   "before it runs (one block ahead with prefetch). Same results, less VRAM, some speed lost. "
                   "-1 (auto): each run plans N from the GPU's free memory and the video's size.")

    @classmethod
    def INPUT_TYPES(cls):
        # -1 stands for "auto" so the widget stays an INT: saved workflows with a number still load
        return {"required": {
            "blocks_to_swap": ("INT", {"default": -1, "min": -1, "max": 40, "step": 1,
                                       "tooltip": "Blocks kept off the GPU (1.3B has 30, 14B has 40); -1: auto, "
                                                  "planned per run."}),
            "offload_embeddings": ("BOOLEAN", {"default": False,
                                               "tooltip": "Also keep the text and CLIP image embeddings off the GPU."}),
            "prefetch": ("BOOLEAN", {"default": True,
                                     "tooltip": "Copy the next block on a side CUDA stream while one computes."}),
        }}

    def make(self, blocks_to_swap, offload_embeddings, prefetch):
        from ..wan.runtime.blockswap import AUTO, BlockSwapArgs

        return (BlockSwapArgs(AUTO if blocks_to_swap == -1 else blocks_to_swap, offload_embeddings, prefetch),)


class WanTorchCompileArgs:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANCOMPILEARGS,)
    RETURN_NAMES = ("compile_args",)
    FUNCTION = "make"
    DESCRIPTION = ("torch.compile each transformer block. The first run compiles (minutes); later steps, prompts "
                   "and runs of the same size reuse it.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "backend": (list(COMPILE_BACKENDS), {"default": "inductor"}),
            "mode": (list(COMPILE_MODES), {"default": "default", "tooltip": "inductor only"}),
            "fullgraph": ("BOOLEAN", {"default": False}),
            "dynamic": (["auto", "true", "false"], {"default": "auto",
                                                     "tooltip": "auto: static first, dynamic after a size change."}),
            "compile_vace": ("BOOLEAN", {"default": True}),
            "cache_size_limit": ("INT", {"default": 64, "min": 8, "max": 1024,
                                         "tooltip": "torch._dynamo recompile limit (raised, never lowered)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, backend=None, mode=None):
        if backend is not None and mode is not None and backend != "inductor" and mode != "default":
            return f"mode {mode!r} only applies to the inductor backend"
        return True

    def make(self, backend, mode, fullgraph, dynamic, compile_vace, cache_size_limit):
        from ..wan.runtime.compile import TorchCompileArgs

        dyn = {"auto": None, "true": True, "false": False}[dynamic]
        return (TorchCompileArgs(backend, mode, fullgraph, dyn, compile_vace, cache_size_limit,
                                 cache_dir=compile_cache_dir()),)


class WanCacheArgs:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANCACHEARGS,)
    RETURN_NAMES = ("cache_args",)
    FUNCTION = "make"
    DESCRIPTION = ("TeaCache: skip transformer passes while the timestep-dependent input changes little, reusing "
                   "the last computed residual. Faster, slightly different results; the sampler logs the skips.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "threshold": ("FLOAT", {"default": 0.2, "min": 0.0, "max": 5.0, "step": 0.001,
                                    "tooltip": "Higher skips more. 0 disables."}),
            "start_step": ("INT", {"default": 1, "min": 0, "max": 9999,
                                   "tooltip": "Steps before this are always computed."}),
            "end_step": ("INT", {"default": -1, "min": -1, "max": 9999,
                                 "tooltip": "Steps after this are always computed; -1: all but the last."}),
            "input": (list(CACHE_INPUTS), {"default": "e0",
                                           "tooltip": "e0/e: TeaCache4Wan2.1 signals; modulated: first block's input."}),
            "coefficients": (["auto", "none"], {"default": "auto",
                                                "tooltip": "auto: TeaCache's fitted rescaling for this model."}),
            "offload_residuals": ("BOOLEAN", {"default": False,
                                              "tooltip": "Keep cached residuals in system memory."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, start_step=None, end_step=None):
        if start_step is not None and end_step is not None and 0 <= end_step < start_step:
            return f"end_step ({end_step}) is before start_step ({start_step})"
        return True

    def make(self, threshold, start_step, end_step, input, coefficients, offload_residuals):
        from ..wan.runtime.cache import CacheArgs

        return (CacheArgs(threshold, start_step, end_step, input, coefficients, offload_residuals),)


class WanEnhanceVideoArgs:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANFETAARGS,)
    RETURN_NAMES = ("feta_args",)
    FUNCTION = "make"
    DESCRIPTION = ("Enhance-A-Video: scale self-attention by its cross-frame attention score for more detail and "
                   "temporal consistency.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "weight": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                 "tooltip": "Strength; 0 disables."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, start_percent=None, end_percent=None):
        if start_percent is not None and end_percent is not None and start_percent > end_percent:
            return f"start_percent ({start_percent}) is after end_percent ({end_percent})"
        return True

    def make(self, weight, start_percent, end_percent):
        from ..wan.runtime.feta import FetaArgs

        return (FetaArgs(weight, start_percent, end_percent),)


@dataclasses.dataclass(frozen=True)
class SpeedArgs:
    """What Wan Speed Options hands the model loader: a LoadOptions field and a RunOptions field."""

    dequant_cache: str = "off"
    sdpa_edge_steps: int = 0


class WanSpeedArgs:
    """The speed options that are neither a kernel choice nor a cache of steps: the expanded weights of
    packed blocks kept on the device, and SDPA on the first/last steps under 8-bit attention."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (WANSPEEDARGS,)
    RETURN_NAMES = ("speed_args",)
    FUNCTION = "make"
    DESCRIPTION = ("For Wan Model Loader: keep dequantized GGUF/fp8/nvfp4 weights of resident blocks (faster steps, "
                   "their bf16 size in memory), and run the first/last steps with SDPA when attention is 8-bit.")

    @classmethod
    def INPUT_TYPES(cls):
        from ..wan.runtime.dequant_cache import DEQUANT_CACHE_MODES

        return {"required": {
            "dequant_cache": (list(DEQUANT_CACHE_MODES), {"default": "off", "tooltip":
                              "on: every resident packed block keeps its expanded weights (about 0.7 GB per 14B "
                              "block in bf16); auto: as many as fit the free GPU memory; off: expand per step."}),
            "sdpa_edge_steps": ("INT", {"default": 0, "min": 0, "max": 100, "tooltip":
                                "With int8/sage/auto attention: this many first and last steps use SDPA."}),
        }}

    def make(self, dequant_cache, sdpa_edge_steps):
        from ..wan.runtime.dequant_cache import check_mode

        return (SpeedArgs(check_mode(dequant_cache), int(sdpa_edge_steps)),)


NODE_CLASS_MAPPINGS = {
    "WanBlockSwapArgs": WanBlockSwapArgs,
    "WanTorchCompileArgs": WanTorchCompileArgs,
    "WanCacheArgs": WanCacheArgs,
    "WanEnhanceVideoArgs": WanEnhanceVideoArgs,
    "WanSpeedArgs": WanSpeedArgs,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "WanBlockSwapArgs": "Wan Block Swap Options",
    "WanTorchCompileArgs": "Wan Torch Compile Options",
    "WanCacheArgs": "Wan Step Cache (TeaCache) Options",
    "WanEnhanceVideoArgs": "Wan Enhance-A-Video Options",
    "WanSpeedArgs": "Wan Speed Options",
}
