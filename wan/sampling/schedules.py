"""Flow-matching sigma schedules.

Convention used by every sampler here: ``x_s = (1 - s) * x0 + s * noise`` for a noise level ``s`` in
[0, 1]; the DiT is called at timestep ``t = s * 1000`` and predicts the velocity ``v = noise - x0``.
A schedule is ``steps + 1`` float32 sigmas, decreasing, ending at exactly 0.

Shift (Wan's ``sample_shift``) bends a uniform grid towards high noise:
``s' = shift * s / (1 + (shift - 1) * s)``.

Three grids exist in the reference code and differ by a few parts in a thousand, so each has a name
(``schedule=``) and the sampler registry records which one its diffusers counterpart uses:

- ``"wan"``   uniform on [0.999, 0] (steps + 1 points), shifted. The official Wan
  ``FlowUniPCMultistepScheduler.set_timesteps`` grid and diffusers'
  ``DPMSolverMultistepScheduler(use_flow_sigmas=True)``.
- ``"unipc"`` uniform on [1, 0.001] (steps points), shifted, then 0 appended; the first sigma is
  lowered by 1e-6 so that log(1 - s) stays finite. diffusers'
  ``UniPCMultistepScheduler(use_flow_sigmas=True)``, the default of diffusers' Wan pipelines.
- ``"euler"`` diffusers' ``FlowMatchEulerDiscreteScheduler(shift=...)`` and ``FlowMatchLCMScheduler``:
  uniform from 1 down to the *shifted* 0.001, then shifted (again), then 0 appended.

``denoise`` < 1 follows diffusers' ``strength`` in its flow-matching video-to-video pipelines: the
full ``steps`` schedule is built and only its last ``int(steps * denoise)`` steps are run, the input
latents being noised to the first remaining sigma (see ``noise.noise_latents``). ComfyUI instead
stretches the schedule to ``int(steps / denoise)`` steps and keeps ``steps`` of them; we follow diffusers.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import WanInputError

NUM_TRAIN_TIMESTEPS = 1000
SCHEDULES = ("wan", "unipc", "euler")


def shift_sigma(sigma, shift: float):
    """s' = shift * s / (1 + (shift - 1) * s), elementwise on floats, arrays or tensors."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def _check(steps: int, shift: float, denoise: float, schedule: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise WanInputError(f"steps must be a positive integer, got {steps!r}")
    if not shift > 0:
        raise WanInputError(f"shift must be > 0, got {shift!r}")
    if not 0.0 < denoise <= 1.0:
        raise WanInputError(f"denoise must be in (0, 1], got {denoise!r}")
    if schedule not in SCHEDULES:
        raise WanInputError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")


def _full_schedule(steps: int, shift: float, schedule: str) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas float32 [steps + 1], timesteps [steps]) exactly as the reference computes them; the
    timesteps come from the float64 sigmas, before the float32 cast, as the reference does."""
    n = NUM_TRAIN_TIMESTEPS
    if schedule == "wan":
        s = shift_sigma(1.0 - np.linspace(1, 1 / n, steps + 1), shift)[::-1][:-1].copy()
        timesteps = (s * n).astype(np.int64)
    elif schedule == "unipc":
        s = shift_sigma(np.linspace(1, 1 / n, steps + 1)[:-1], shift)
        if abs(s[0] - 1) < 1e-6:
            s[0] -= 1e-6
        timesteps = (s * n).astype(np.int64)
    else:
        # diffusers derives the lower end from its float32 training table, already shifted once
        lowest = torch.tensor(1.0, dtype=torch.float32) / n
        lowest = shift_sigma(lowest, float(shift)).item()
        s = shift_sigma(np.linspace(n * 1.0, lowest * n, steps) / n, shift)
        timesteps = (s.astype(np.float32) * np.float32(n)).astype(np.float32)
    sigmas = np.concatenate([s, [0.0]]).astype(np.float32)
    return sigmas, timesteps


def steps_to_run(steps: int, denoise: float) -> int:
    """How many steps a run of ``steps`` with ``denoise`` takes: the last ``int(steps * denoise)``."""
    _check(steps, 1.0, denoise, "wan")
    run = min(int(steps * denoise), steps)
    if run < 1:
        raise WanInputError(f"denoise={denoise} leaves no step to run out of {steps}; raise steps or denoise")
    return run


def get_sigmas(steps: int, shift: float, denoise: float = 1.0, *, schedule: str = "wan") -> torch.Tensor:
    """float32 sigmas [int(steps * denoise) + 1], decreasing, ending at 0 (see the module docstring)."""
    _check(steps, shift, denoise, schedule)
    sigmas, _ = _full_schedule(steps, shift, schedule)
    run = steps_to_run(steps, denoise)
    return torch.from_numpy(sigmas[steps - run :].copy())


def get_timesteps(steps: int, shift: float, denoise: float = 1.0, *, schedule: str = "wan") -> torch.Tensor:
    """The DiT timesteps [int(steps * denoise)] that the reference passes for each sigma of
    ``get_sigmas``: int64, truncated from the float64 sigma * 1000, for ``wan`` and ``unipc`` (as the
    official Wan code and diffusers do); float32 sigma * 1000 for ``euler``. ComfyUI passes the float
    sigma * 1000 for every sampler."""
    _check(steps, shift, denoise, schedule)
    _, timesteps = _full_schedule(steps, shift, schedule)
    run = steps_to_run(steps, denoise)
    return torch.from_numpy(timesteps[steps - run :].copy())

