"""Build a WanDiT from a state dict (any layout, plain or packed tensors) without a second copy.

The network is built on the ``meta`` device and the file's tensors are assigned into it, so the
only weights in memory are the ones read from the file (converted once where a dtype changes).
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from .animate import is_blur_constant
from .config import DiTConfig
from .model import WanDiT
from .shapes import config_from_shapes
from ..identify import identify
from ...errors import WanFileError
from ...weights.checks import check_tensors
from ...weights.names import dit_to_official
from ...weights.packed import attach_packed

_STORAGE_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _is_packed(v) -> bool:
    return bool(getattr(v, "is_packed", False))


def checked_state_dict(state_dict: dict, path: str | os.PathLike | None = None) -> tuple[DiTConfig, dict]:
    """(config, a new dict of the same tensors under the official names) of a Wan DiT state dict in
    any supported layout, after checking it is a DiT and that every name and shape fits its
    config. Packed tensors stay packed. What a model of another stack (ComfyUI's) is built from."""
    if state_dict:
        who = identify(state_dict)
        if who.role != "dit":
            raise WanFileError(path, f"not a Wan diffusion model: it looks like {who.detail}")
    cfg = config_from_shapes(state_dict, path)
    sd = dit_to_official(state_dict)
    if cfg.is_animate:  # Animate checkpoints carry the motion encoder's constant blur kernels
        sd = {k: v for k, v in sd.items() if not is_blur_constant(k)}
    with torch.device("meta"):
        model = WanDiT(cfg)
    check_tensors(model, sd, path, f"Wan DiT ({model.cfg.variant})")
    return cfg, sd


def load_dit(
    state_dict: dict,
    path: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
) -> WanDiT:
    """A ready WanDiT (eval mode, no grad) from a Wan DiT state dict in any supported layout.

    ``dtype`` is the storage and compute dtype of the ordinary weights (bf16, fp16 or fp32).
    Packed tensors (``is_packed``; GGUF, fp8) are handed to ``weights.packed.attach_packed`` and
    kept as they are. Norms, modulation and the patch embeddings stay fp32 when the file
    has them in fp32 (they are tiny and computed in fp32 anyway). ``path`` only names the file in
    errors.
    """
    if dtype not in _STORAGE_DTYPES:
        raise ValueError(f"dtype {dtype} is not one of {_STORAGE_DTYPES}")
    cfg, sd = checked_state_dict(state_dict, path)
    with torch.device("meta"):
        model = WanDiT(cfg)

    if any(_is_packed(v) for v in sd.values()):
        attach_packed(model, sd)  # swaps Linears in place and removes the keys it consumed

    linear_keys = {f"{n}.{leaf}" for n, m in model.named_modules() if isinstance(m, nn.Linear)
                   for leaf in ("weight", "bias")}
    for k, v in sd.items():
        if _is_packed(v):
            continue
        target = dtype
        if k not in linear_keys and v.dtype == torch.float32:
            target = torch.float32
        sd[k] = v.to(device=device, dtype=target)
    model.load_state_dict(sd, strict=False, assign=True)
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    if leftover:  # strict=False because packed keys are gone; every other tensor must be real now
        raise WanFileError(path, f"Wan DiT tensors were not loaded: {', '.join(leftover[:3])}")
    model.dtype_override = dtype
    model.to(device)  # packed buffers follow too
    return model.eval().requires_grad_(False)

