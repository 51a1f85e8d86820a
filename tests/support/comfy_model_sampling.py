"""ComfyUI's own flow model sampling for schedule tests: a stand-in model patched by ComfyUI's
ModelSamplingSD3 node (what a Wan graph puts before its sampler), and BasicScheduler on it."""

from __future__ import annotations

import torch

from refs import comfy, comfy_extras


class _StandInModel:
    """What ModelSamplingSD3.patch and BasicScheduler touch of a ComfyUI ModelPatcher."""

    def __init__(self):
        self.model = type("M", (), {"model_config": None})()
        self.patches = {}

    def clone(self):
        return self

    def add_object_patch(self, name, obj):
        self.patches[name] = obj

    def get_model_object(self, name):
        return self.patches[name]


def comfy_model(shift: float) -> _StandInModel:
    """A stand-in model patched by ComfyUI's own ModelSamplingSD3 node with ``shift``."""
    comfy("comfy.model_sampling")
    return comfy_extras("nodes_model_advanced").ModelSamplingSD3().patch(_StandInModel(), shift)[0]


def basic_scheduler(shift: float, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """ComfyUI's BasicScheduler node's SIGMAS for a Wan model at ``shift``."""
    node = comfy_extras("nodes_custom_sampler").BasicScheduler
    return node.execute(comfy_model(shift), scheduler, steps, denoise).result[0]


def split_sigmas(sigmas: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI's SplitSigmas node: (high, low) at ``step``."""
    node = comfy_extras("nodes_custom_sampler").SplitSigmas
    return tuple(node.execute(sigmas, step).result)
