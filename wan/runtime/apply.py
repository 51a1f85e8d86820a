"""The two entry points the loader and the sampler call: model-time options and sampling-time ones."""

from __future__ import annotations

import contextlib
import logging

import torch

from .blockswap import BlockSwapArgs, apply_block_swap
from .cache import CacheArgs, CacheStats, use_step_cache
from .compile import TorchCompileArgs, compile_blocks
from .feta import FetaArgs, use_feta

log = logging.getLogger(__name__)


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
        dit.set_attention(attention_mode)
    if fp8_fast:
        from .fp8_matmul import enable_fp8_fast

        enable_fp8_fast(dit, device)
    if block_swap is not None and block_swap.blocks_to_swap + block_swap.offload_embeddings > 0:
        apply_block_swap(dit, block_swap, device, offload_device)
    else:
        dit.to(device)
    compile_blocks(dit, compile_args)
    return dit


@contextlib.contextmanager
def sampling_options(
    dit: torch.nn.Module,
    cache: CacheArgs | None = None,
    feta: FetaArgs | None = None,
    total_steps: int | None = None,
    offload_device="cpu",
):
    """Step caching and Enhance-A-Video on ``dit`` for one sampling run; yields the CacheStats
    (logged at the end when caching was on)."""
    with use_feta(dit, feta, total_steps), use_step_cache(dit, cache, total_steps, offload_device) as stats:
        yield stats
    if cache is not None:
        log.info("Wan: %s", stats)


__all__ = ["BlockSwapArgs", "CacheArgs", "CacheStats", "FetaArgs", "TorchCompileArgs", "prepare_model",
           "sampling_options"]
