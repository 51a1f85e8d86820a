"""``Step``: what a sampler knows about the model call it is making, handed down the denoiser chain.

The sampler is the only place that knows which step it is on; everything below it (CFG, the
Wan2.2 expert switch, context windows, the DiT call and the runtime options around the DiT) reads
the step from here instead of guessing it back from the sigma or the timestep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Step:
    """One model call of a sampling run.

    index: the step, counting from 0 within this run (a video-to-video run with ``denoise`` < 1
    starts at 0 too); total: the steps of this run; sigma: 0-dim float32 CPU tensor, the noise
    level the sampler evaluates the model at; timestep: 0-dim tensor, the DiT timestep of that
    sigma on the 1000 scale, from the schedule (``schedules.get_timesteps``).
    """

    index: int
    total: int
    sigma: torch.Tensor
    timestep: torch.Tensor

    @property
    def fraction(self) -> float:
        """index / total: where in the run this step lies (0 for the first step)."""
        return self.index / self.total
