"""fp16 accumulation: fp16 matrix products that accumulate in fp16 instead of fp32.

PyTorch's ``torch.backends.cuda.matmul.allow_fp16_accumulation`` (torch 2.7+) lets cuBLAS keep the
running sums of an fp16 GEMM in fp16. Consumer GPUs (GeForce) run such GEMMs at twice the rate of
fp32-accumulated ones; data-centre GPUs (A100, H100) run both at the same rate, so it buys nothing
there. It only touches fp16 compute (``base_precision`` fp16), never bf16 or fp32, and costs
precision (sums of 1536-5120 products rounded to 11 bits).

The flag is global to the process, so it is set only while a transformer block of the model that
asked for it computes and put back after (also when the block raises): another model in the same
process (ComfyUI's own) keeps its setting.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..errors import WanInputError
from ..notices import notify

_MATMUL = torch.backends.cuda.matmul


def supported() -> bool:
    """Whether this PyTorch has the flag (2.7 and newer)."""
    return hasattr(_MATMUL, "allow_fp16_accumulation")


class _Scoped:
    """Forward hooks that set the flag around one module's forward and put the old value back
    (outside any compiled graph: a global flag is not part of one)."""

    def __init__(self):
        self.saved: list[bool] = []

    @torch.compiler.disable
    def before(self, module, args):
        self.saved.append(_MATMUL.allow_fp16_accumulation)
        _MATMUL.allow_fp16_accumulation = True

    @torch.compiler.disable
    def after(self, module, args, output):
        if self.saved:
            _MATMUL.allow_fp16_accumulation = self.saved.pop()


def _scoped(method):
    # a VACE block computes through forward_vace, which no forward hook sees
    @functools.wraps(method)
    def run(*args, **kwargs):
        saved = _MATMUL.allow_fp16_accumulation
        _MATMUL.allow_fp16_accumulation = True
        try:
            return method(*args, **kwargs)
        finally:
            _MATMUL.allow_fp16_accumulation = saved
    return run


def enable_fp16_accumulation(dit: nn.Module, dtype: torch.dtype) -> None:
    """Run every transformer block of ``dit`` (VACE blocks included) with fp16 accumulation;
    ``dtype``: the model's compute dtype (the flag changes nothing unless it is fp16)."""
    if not supported():
        raise WanInputError(f"fp16_accumulation needs PyTorch 2.7 or newer (this is {torch.__version__})")
    if dtype != torch.float16:
        notify(f"fp16_accumulation only changes fp16 compute; this model computes in {dtype} "
               "(choose base_precision fp16 for it to act)")
    for block in [*dit.blocks, *getattr(dit, "vace_blocks", ())]:
        scoped = _Scoped()
        block.register_forward_pre_hook(scoped.before)
        block.register_forward_hook(scoped.after, always_call=True)
        if hasattr(block, "forward_vace"):
            block.forward_vace = _scoped(block.forward_vace)
