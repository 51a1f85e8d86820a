"""Which sampler step a model call belongs to, told from the timesteps it is called with.

The step-time options (step cache, Enhance-A-Video) sit inside the model, below the sampler, so
they count steps themselves: calls with the same timesteps (CFG's conditional and unconditional
passes when not batched) belong to one step, a new timestep starts the next.
"""

from __future__ import annotations

import torch


class StepCounter:
    """``see(t)`` per model call; then ``step`` (from 0) and ``call`` (index within the step)."""

    def __init__(self):
        self.key: tuple | None = None
        self.step = -1
        self.call = 0

    def see(self, t) -> int:
        tt = torch.as_tensor(t).float()
        key = (tuple(tt.shape), float(tt.sum()), float(tt.max()))
        if key != self.key:
            self.key, self.step, self.call = key, self.step + 1, 0
        else:
            self.call += 1
        return self.step
