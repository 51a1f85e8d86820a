"""The entry point the loaders call: the model-time options of a loaded DiT. (Run-time options, step
cache and Enhance-A-Video, wrap the DiT's forward inside ``wan.job.sample.sample_video``.)"""

from __future__ import annotations

import torch

from .blockswap import BlockSwapArgs, apply_block_swap
from .compile import TorchCompileArgs, compile_blocks


def prepare_model(
    dit: torch.nn.Module,
    device,
    offload_device="cpu",
    block_swap: BlockSwapArgs | None = None,
    compile_args: TorchCompileArgs | None = None,
    attention_mode: str | None = None,
    fp8_fast: bool = False,
) -> torch.nn.Module:
    """Put a loaded WanDiT on ``device`` with the chosen options (each None/False: unchanged).

    Order matters: the attention kernel and fp8 layers are chosen before compiling (compiled
    code captures them), and block swap places the tensors last. Without block swap the model is
    moved to ``device`` whole.
    """
    if attention_mode is not None:
        from ..models.dit.attention_backends import set_attention_backend

        set_attention_backend(dit, attention_mode)
    if fp8_fast:
        from .fp8_matmul import enable_fp8_fast

        enable_fp8_fast(dit, device)
    if block_swap is not None and block_swap.blocks_to_swap + block_swap.offload_embeddings > 0:
        apply_block_swap(dit, block_swap, device, offload_device)
    else:
        dit.to(device)
    compile_blocks(dit, compile_args)
    return dit


__all__ = ["BlockSwapArgs", "TorchCompileArgs", "prepare_model"]
