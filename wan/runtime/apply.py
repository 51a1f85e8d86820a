"""The sampling-time options of one run (the model-time ones are applied by ``wan.job.load``)."""

from __future__ import annotations

import contextlib
import logging

import torch

from .blockswap import BlockSwapArgs
from .cache import CacheArgs, CacheStats, use_step_cache
from .compile import TorchCompileArgs
from .feta import FetaArgs, use_feta

log = logging.getLogger(__name__)


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


__all__ = ["BlockSwapArgs", "CacheArgs", "CacheStats", "FetaArgs", "TorchCompileArgs", "sampling_options"]
