"""The command line's side of a multi-process run (``torchrun ... -m wan generate --parallel ...``):
this process's rank and device from torchrun's environment, the group joined, and a generate in
which rank 0 alone encodes the prompts and images and decodes the video while every rank samples."""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from ..errors import WanError, WanInputError
from ..job.options import LoadOptions
from ..job.sample import sample_video
from .job import check_parallel, forget_groups
from .layout import ParallelLayout
from .rank import env_rank, init, rank_device, share


@dataclasses.dataclass
class Launch:
    """This process in a launched layout: ``first`` is rank 0 (loads the text encoder, VAE and
    CLIP vision, writes the output)."""

    layout: ParallelLayout
    rank: int
    device: torch.device

    @property
    def first(self) -> bool:
        return self.rank == 0

    def generate(self, pipe, dit, dit_low, prompt: str, negative: str, callback=None, **kw):
        """The raw latent on rank 0 (None on the others) of ``pipe(prompt, negative, **kw)`` split over the
        layout; ``pipe`` is None except on rank 0. A refusal on rank 0 (bad image, options) stops
        every rank with its message before any sampling."""
        check_parallel(self.layout, [m for m in (dit, dit_low) if m is not None], kw["run"])
        job, problem = None, None
        if self.first:
            try:
                job = pipe.prepare(prompt, negative, **kw)
            except WanError as exc:
                problem = exc
        shared, message = share((job, None if problem is None else str(problem)))
        if problem is not None:
            raise problem
        if message is not None:
            raise WanInputError(f"rank 0 refused the job: {message}")
        latent = sample_video(dit, shared.text, shared.image, shared.sampling, shared.run, dit_low=dit_low,
                              latents=shared.latents, callback=callback if self.first else None)
        return latent if self.first else None

    def close(self) -> None:
        forget_groups()
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(layout: ParallelLayout, load_options: LoadOptions) -> Launch:
    """Join torchrun's group (env://) as ``layout`` needs: WanInputError, before any model loads,
    when the number of processes differs from the layout's or a machine has fewer GPUs than processes."""
    rank, world, local = env_rank()
    layout.check_world(world)
    device = rank_device(local, load_options)
    init(rank, world, "env://", device)
    return Launch(layout, rank, device)
