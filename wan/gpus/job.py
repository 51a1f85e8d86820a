"""What every rank of a Wan Multi-GPU group receives for one job: the model files and how to load
them (each rank loads its own copy or shard), the prompt's embeddings and conditioning (encoded once,
by the caller), and the sampling and run options. ``wan.parallel.run_rank(job, rank=, world_size=,
layout=, device=)`` takes it and returns the raw latent on rank 0."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..job.options import LoadOptions, RunOptions, SamplingOptions


@dataclasses.dataclass(frozen=True)
class RankJob:
    dit_path: str
    load: LoadOptions
    text_embeds: Any  # PromptEmbeds
    cond: Any  # VideoConditioning
    sampling: SamplingOptions
    run: RunOptions
    dit_low_path: str | None = None  # Wan2.2 A14B: the low-noise expert
    load_low: LoadOptions | None = None
    latents: Any = None  # a start latent (video-to-video), or None
