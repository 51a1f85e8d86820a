"""Wan Multi-GPU: one video over several GPUs. The node names the devices (a list, or the first N)
and the parallel layout, and starts the group of warm Ray actors (one per device, one process group;
wan/gpus/group.py); the Wan Sampler, given its output, runs the job on them and returns the LATENT.

The group is handed to ComfyUI's memory management as the cached models are (a ModelPatcher of no
size whose unload callback releases it), so ComfyUI's own unloads, "Free model and node cache" and
POST /free end the actors and give their GPU memory back.
"""

from __future__ import annotations

import dataclasses

import torch

from ._common import CATEGORY, _load_models, _patcher

from ..wan.gpus.layout import LAYOUTS, MultiGpuOptions, parse_gpus

WANMULTIGPU = "WANMULTIGPU"
_HANDLE = torch.nn.Module()  # what ComfyUI holds for the groups: unloading it releases them
_listed = {"patcher": None, "live": False}


def _register_release() -> None:
    """List the groups with ComfyUI (again after each unload: ComfyUI forgets an unloaded patcher)."""
    from ..wan.gpus.group import release_all

    def released():
        # The patcher stays referenced here until the next listing: dropping it inside ComfyUI's
        # unload would let ComfyUI's own clean-up of collected models run in the middle of it.
        _listed["live"] = False
        release_all()

    if not _listed["live"]:
        _listed["patcher"] = _patcher(_HANDLE, torch.device("cpu"), released)
        _listed["live"] = True
        _load_models([_listed["patcher"]])


class WanMultiGPU:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANMULTIGPU,)
    RETURN_NAMES = ("multi_gpu",)
    FUNCTION = "make"
    DESCRIPTION = ("Runs the Wan Sampler's job over several GPUs (sequence and/or CFG parallel) on warm Ray "
                   "actors, one per GPU; they are released by ComfyUI's unload and POST /free. Needs Ray.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "gpus": ("STRING", {"default": "", "tooltip": "CUDA device indices, e.g. 0,1,2,3; empty: the first "
                                                          "'count' devices."}),
            "count": ("INT", {"default": 2, "min": 1, "max": 64, "tooltip": "Used when gpus is empty."}),
            "layout": (list(LAYOUTS), {"default": "ulysses", "tooltip":
                       "ulysses: sequence parallel (heads must divide by the count: 12 for 1.3B, 24 for 5B, "
                       "40 for 14B); ring: any count; cfg: cond and uncond on 2 GPUs; cfg+...: both."}),
        }}

    def make(self, gpus, count, layout):
        from ..wan.gpus.group import group_for

        devices = parse_gpus(gpus) or tuple(range(count))
        options = MultiGpuOptions(devices, layout, "cuda" if torch.cuda.is_available() else "cpu")
        options.parallel_layout()  # a layout this count cannot take fails here, before any actor starts
        group_for(options)  # started (or kept warm) now: a wrong device or layout fails before the sampler
        _register_release()
        return (options,)


def run_on_group(options: MultiGpuOptions, model, model_low, text_embeds, cond, sampling, run, latents):
    """The Wan Sampler's job on the group for ``options``: the raw latent (each rank loads the files)."""
    from ..wan.errors import WanInputError
    from ..wan.gpus.group import group_for
    from ..wan.parallel.rank import RankJob, run_rank

    if model.path is None or (model_low is not None and model_low.path is None):
        raise WanInputError("Wan Multi-GPU: the model must come from Wan Model Loader (each GPU loads the file)")
    run = dataclasses.replace(run, parallel=options.parallel_layout())
    job = RankJob(model.path, model.options, sampling, run, text=text_embeds, image=cond, latents=latents,
                  dit_low=None if model_low is None else model_low.path,
                  load_low=None if model_low is None else model_low.options)
    latent = group_for(options).run(run_rank, job)
    _register_release()
    return latent


NODE_CLASS_MAPPINGS = {"WanMultiGPU": WanMultiGPU}
NODE_DISPLAY_NAME_MAPPINGS = {"WanMultiGPU": "Wan Multi-GPU"}
