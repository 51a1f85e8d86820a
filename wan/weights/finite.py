"""Weights with NaN or Inf refused on load, naming the file and the tensor.

One reading pass per tensor (``finite.nonfinite``): an aminmax of plain float tensors, the byte
maxima of fp8 tensors (their NaN bit patterns), and for GGUF quantized blocks only their fp16
scale fields (``dequant.F16_FIELDS``: the only place a quantized block can hold a non-finite
value). A corrupt download or a broken conversion then fails at load instead of sampling a
black video. About as costly as reading the file once more from the page cache.
"""

from __future__ import annotations

import math

import torch

from ..errors import WanFileError
from ..finite import nonfinite
from .dequant import block_scales
from .nvfp4 import block_scales as nvfp4_block_scales


def tensor_problem(value) -> str | None:
    """"NaN", "+Inf", ... when a plain or packed tensor holds a non-finite value, else None."""
    if getattr(value, "is_packed", False):
        if value.scale is not None and not math.isfinite(value.scale):
            return f"a {value.scale} scale"
        if value.qtype.startswith("fp8"):
            return nonfinite(value.data.view({"fp8_e4m3fn": torch.float8_e4m3fn,
                                              "fp8_e5m2": torch.float8_e5m2}[value.qtype]))
        if value.qtype == "int8":  # integers and a finite scale
            return None
        if value.qtype == "nvfp4":  # E2M1 codes are all finite: only the fp8 block scales can be NaN
            return nonfinite(nvfp4_block_scales(value.data, value.shape))
        return nonfinite(block_scales(value.data, value.qtype))
    if isinstance(value, torch.Tensor):
        return nonfinite(value)
    return None


def check_finite_weights(state_dict: dict, path) -> None:
    """WanFileError naming ``path`` and the first tensor of ``state_dict`` holding NaN or Inf."""
    for name, value in state_dict.items():
        bad = tensor_problem(value)
        if bad is not None:
            raise WanFileError(path, f"tensor {name!r} contains {bad} values: the file is corrupt or was "
                               "converted wrongly (download or convert it again)")
