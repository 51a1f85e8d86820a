"""Dequantized weights of resident DiT blocks kept on the device, so a step pays no expansion.

A packed Linear (GGUF, fp8, int8, nvfp4) expands its weight on every forward: a few memory-bound
kernels per layer, which at 14B 480p made a GGUF step 11-16% slower than bf16. Keeping the
expansion of the blocks that stay on the device removes that cost and spends, per block, the
weights' size in the compute dtype (a 14B block: 0.70 GB in bf16) instead of their packed size.
Blocks that block swap streams are never kept (their bytes leave the device after each use).

Modes: "off" (nothing kept), "on" (every resident block), "auto" (on a CUDA device, the resident
blocks whose expansions fit into the free memory less a reserve for the run's activations, first
blocks first; off on other devices). The memory plan can size its budget with ``block_cache_bytes``
and pass it as ``budget``.

The kept tensors are the base weights: a LoRA on a packed layer adds its product to the output
through a forward hook (``wan.weights.lora.apply``), never to the weight, so LoRAs applied or
removed between runs still apply and need no new expansion. Moving or casting the model drops the
kept weights (``PackedLinear._apply``: ComfyUI's unloading frees them with the model) and a
forward pre-hook on each kept block expands them again, where the bytes are then, before its next
forward; ``drop_dequant_cache`` ends it all. The blocks are chosen once, at load.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import WanInputError
from ..weights.packed import PackedLinear

log = logging.getLogger(__name__)

DEQUANT_CACHE_MODES = ("off", "on", "auto")
# what "auto" leaves free for activations, attention and the VAE: this share of the device's total
# memory (the automatic memory plan may pass an exact budget instead)
AUTO_RESERVE = 0.25


def check_mode(mode: str) -> str:
    if mode not in DEQUANT_CACHE_MODES:
        raise WanInputError(f"dequant_cache {mode!r} is not one of {', '.join(DEQUANT_CACHE_MODES)}")
    return mode


def _layers(block: nn.Module) -> list[PackedLinear]:
    # only layers whose forward expands the weight (fp8 matmul layers multiply the bytes directly)
    return [m for m in block.modules() if isinstance(m, PackedLinear) and type(m).forward is PackedLinear.forward]


def block_cache_bytes(dit: nn.Module, dtype: torch.dtype) -> list[int]:
    """Per block of ``dit.blocks``: the bytes its kept expansions take in ``dtype`` (0: nothing packed)."""
    size = torch.empty((), dtype=dtype).element_size()
    return [sum(m.out_features * m.in_features for m in _layers(b)) * size for b in dit.blocks]


def resident_blocks(dit: nn.Module) -> list[int]:
    """Indices of the blocks that stay on the compute device (not streamed by block swap)."""
    swapper = getattr(dit, "_wan_block_swapper", None)
    swapped = set(swapper.blocks) if swapper is not None and swapper.active else set()
    return [i for i in range(len(dit.blocks)) if i not in swapped]


def plan_dequant_cache(costs: list[int], resident: list[int], mode: str, budget: int | None = None) -> list[int]:
    """Which blocks to keep expanded: all resident ones with something packed ("on"), or, with a
    ``budget`` in bytes ("auto"), the first of them while their sum fits; "off": none."""
    check_mode(mode)
    chosen = [i for i in resident if costs[i] > 0] if mode != "off" else []
    if mode == "auto":
        if budget is None:
            return []
        kept, total = [], 0
        for i in chosen:
            if total + costs[i] > budget:
                break
            kept.append(i)
            total += costs[i]
        chosen = kept
    return chosen


def auto_budget(device) -> int | None:
    """Bytes "auto" may keep on ``device``: free memory less AUTO_RESERVE of the total; None (keep
    nothing) off CUDA."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(device)
    return max(0, int(free - AUTO_RESERVE * total))


def enable_dequant_cache(dit: nn.Module, mode: str, dtype: torch.dtype, device=None,
                         budget: int | None = None) -> list[int]:
    """Keep the expansions of the blocks ``plan_dequant_cache`` picks (after block swap has placed
    the model); returns their indices. ``budget`` overrides ``auto_budget(device)`` for "auto"."""
    check_mode(mode)
    drop_dequant_cache(dit)
    if mode == "off":
        return []
    if mode == "auto" and budget is None:
        budget = auto_budget(device if device is not None else next(dit.parameters()).device)
    costs = block_cache_bytes(dit, dtype)
    resident = resident_blocks(dit)
    chosen = plan_dequant_cache(costs, resident, mode, budget)
    kept = sum(m.keep_dequantized(dtype) for i in chosen for m in _layers(dit.blocks[i]))
    dit._wan_dequant_cache = [dit.blocks[i].register_forward_pre_hook(_refill_hook(_layers(dit.blocks[i])))
                              for i in chosen]
    packed = sum(1 for i in resident if costs[i] > 0)
    if packed:
        log.info("Wan: dequantized weights of %d of %d resident packed blocks kept (%.2f GiB, dequant_cache=%s)",
                 len(chosen), packed, kept / 2**30, mode)
    return chosen


def _refill_hook(layers: list[PackedLinear]):
    # outside any compiled graph (as block swap's hooks): it allocates, and the compiled block then
    # only reads a tensor attribute that is always present
    @torch.compiler.disable
    def hook(module, args):
        for m in layers:
            m.refill()
    return hook


def drop_dequant_cache(dit: nn.Module) -> None:
    """Free every kept expansion of ``dit`` and stop keeping them."""
    for handle in getattr(dit, "_wan_dequant_cache", ()):
        handle.remove()
    dit._wan_dequant_cache = []
    for m in dit.modules():
        if isinstance(m, PackedLinear):
            m.drop_dequantized()
