"""Flow-matching sigma schedules.

Convention used by every sampler here: ``x_s = (1 - s) * x0 + s * noise`` for a noise level ``s`` in
[0, 1]; the DiT is called at timestep ``t = s * 1000`` and predicts the velocity ``v = noise - x0``.
A schedule is ``steps + 1`` float32 sigmas, decreasing, ending at exactly 0.

Shift (Wan's ``sample_shift``) bends a uniform grid towards high noise:
``s' = shift * s / (1 + (shift - 1) * s)``.

Every grid has a name in ``SCHEDULERS``, the one list the node, the CLI and the API offer:
``"default"`` (the grid of the chosen sampler's diffusers counterpart, ``samplers.SAMPLER_SCHEDULES``),
the three diffusers / official grids below, and ComfyUI's schedulers (``comfy_schedules``: simple,
normal, beta, ... each equal to ComfyUI's ``calculate_sigmas`` for ModelSamplingSD3's shift).

The three reference grids differ by a few parts in a thousand, so each has a name and the sampler
registry records which one its diffusers counterpart uses:

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
stretches the schedule to ``int(steps / denoise)`` steps and keeps ``steps`` of them: its scheduler
names follow ComfyUI (as its KSampler and BasicScheduler do), the diffusers grids follow diffusers.

Explicit schedules (``build_schedule``) replace steps, shift, scheduler and denoise:
- ``sigmas``: ComfyUI's SIGMAS (a 1-D float tensor, decreasing, ending at 0), e.g. from
  BasicScheduler or SplitSigmas.
- ``timesteps``: DiT timesteps on the 1000 scale, lightx2v's ``denoising_step_list`` style
  (1000, 750, 500, 250). The shift IS applied, as lightx2v does (its step-distill scheduler indexes
  a shifted 1000-point grid): sigma = shift(t / 1000), 0 appended. So 1000,750,500,250 at shift 5 is
  exactly ComfyUI's ``simple`` at 4 steps and shift 5.
With an explicit schedule or a ComfyUI scheduler the DiT timestep of a sigma is ``sigma * 1000``
in float32 (ComfyUI's ``ModelSamplingDiscreteFlow.timestep``), and a run without a start latent
begins at ``sigmas[0] * noise`` (ComfyUI's flow noise scaling of its empty, all-zero latent); the
diffusers grids keep their own integer timesteps and start from pure noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import WanInputError
from .comfy_schedules import COMFY_SCHEDULERS, comfy_denoise_sigmas, flow_shift

NUM_TRAIN_TIMESTEPS = 1000
DIFFUSERS_GRIDS = ("wan", "unipc", "euler")
DEFAULT = "default"  # the chosen sampler's own grid (``samplers.SAMPLER_SCHEDULES``)
# The one list of scheduler names (nodes, CLI and Python API all offer these).
SCHEDULERS = (DEFAULT, *DIFFUSERS_GRIDS, *COMFY_SCHEDULERS)


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
    check_scheduler(schedule, allow_default=False)


def check_scheduler(name: str, allow_default: bool = True) -> None:
    """WanInputError unless ``name`` is in ``SCHEDULERS`` ("default" only where it can be resolved)."""
    names = SCHEDULERS if allow_default else SCHEDULERS[1:]
    if name not in names:
        raise WanInputError(f"unknown scheduler {name!r}; expected one of {', '.join(names)}")


def _full_schedule(steps: int, shift: float, schedule: str) -> tuple[np.ndarray, np.ndarray]:
    """(sigmas float32 [steps + 1], timesteps [steps]) of a diffusers grid exactly as the reference
    computes them; the timesteps come from the float64 sigmas, before the float32 cast, as the
    reference does."""
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
    if schedule in COMFY_SCHEDULERS:
        return comfy_denoise_sigmas(schedule, steps, shift, denoise)
    sigmas, _ = _full_schedule(steps, shift, schedule)
    run = steps_to_run(steps, denoise)
    return torch.from_numpy(sigmas[steps - run :].copy())


def get_timesteps(steps: int, shift: float, denoise: float = 1.0, *, schedule: str = "wan") -> torch.Tensor:
    """The DiT timesteps [int(steps * denoise)] that the reference passes for each sigma of
    ``get_sigmas``: int64, truncated from the float64 sigma * 1000, for ``wan`` and ``unipc`` (as the
    official Wan code and diffusers do); float32 sigma * 1000 for ``euler`` and ComfyUI's schedulers
    (ComfyUI passes the float sigma * 1000 for every sampler)."""
    _check(steps, shift, denoise, schedule)
    if schedule in COMFY_SCHEDULERS:
        return sigma_timesteps(comfy_denoise_sigmas(schedule, steps, shift, denoise))
    _, timesteps = _full_schedule(steps, shift, schedule)
    run = steps_to_run(steps, denoise)
    return torch.from_numpy(timesteps[steps - run :].copy())



def sigma_timesteps(sigmas: torch.Tensor) -> torch.Tensor:
    """The DiT timestep of each step of an explicit schedule: float32 sigma * 1000, as ComfyUI's
    ``ModelSamplingDiscreteFlow.timestep`` makes it (one per step: the final 0 has none)."""
    return sigmas[:-1].to(torch.float32) * NUM_TRAIN_TIMESTEPS


def check_sigmas(sigmas, name: str = "sigmas") -> torch.Tensor:
    """ComfyUI SIGMAS (tensor, list or tuple) -> float32 CPU tensor; WanInputError naming ``name``
    unless it is 1-D, holds at least one step, lies in [0, 1], strictly decreases and ends at 0."""
    try:
        t = torch.as_tensor(sigmas).detach().to(device="cpu", dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise WanInputError(f"{name} must be a 1-D list of floats (ComfyUI SIGMAS): {exc}") from None
    if t.ndim != 1:
        raise WanInputError(f"{name} must be 1-D (ComfyUI SIGMAS), got shape {tuple(t.shape)}")
    if t.numel() < 2:
        raise WanInputError(f"{name} needs at least 2 values (one step, ending at 0), got {t.tolist()}")
    if not bool(torch.isfinite(t).all()) or float(t.max()) > 1.0 + 1e-6 or float(t.min()) < 0.0:
        raise WanInputError(f"{name} must lie in [0, 1] for a flow model, got {t.tolist()}")
    if not bool((t[1:] < t[:-1]).all()):
        raise WanInputError(f"{name} must strictly decrease, got {t.tolist()}")
    if float(t[-1]) != 0.0:
        raise WanInputError(f"{name} must end at 0 (a final, fully denoised step), got last {float(t[-1])}; "
                            "to stop early, split the sigmas so the other part ends at 0")
    return t


def sigmas_from_timesteps(timesteps, shift: float) -> torch.Tensor:
    """lightx2v's ``denoising_step_list`` (DiT timesteps on the 1000 scale, decreasing, e.g. 1000, 750,
    500, 250) -> float32 sigmas ``shift(t / 1000)`` with 0 appended. The shift is applied, as lightx2v
    does, in ComfyUI's float32 arithmetic of its sigma table, so whole timesteps give entries of that
    table (1000, 750, 500, 250 at shift 5 equals ComfyUI's ``simple`` at 4 steps)."""
    try:
        t = torch.as_tensor([float(v) for v in timesteps], dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise WanInputError(f"timesteps must be numbers on the 1000 scale: {exc}") from None
    if t.numel() < 1:
        raise WanInputError("timesteps is empty: give at least one, e.g. 1000,750,500,250")
    if not bool(torch.isfinite(t).all()) or float(t.max()) > NUM_TRAIN_TIMESTEPS or float(t.min()) <= 0:
        raise WanInputError(f"timesteps must lie in (0, 1000], got {t.tolist()}")
    if not bool((t[1:] < t[:-1]).all()):
        raise WanInputError(f"timesteps must strictly decrease, got {t.tolist()}")
    if not shift > 0:
        raise WanInputError(f"shift must be > 0, got {shift!r}")
    # ComfyUI's table computes t * 1000 / 1000 before shifting; keep its rounding
    sigmas = flow_shift(shift, (t / NUM_TRAIN_TIMESTEPS) * NUM_TRAIN_TIMESTEPS / NUM_TRAIN_TIMESTEPS)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


@dataclass(frozen=True, eq=False)
class Schedule:
    """What a sampler runs: float32 sigmas [n + 1] ending at 0, the DiT timestep of each step [n],
    and whether a run without a start latent begins at ``sigmas[0] * noise`` (ComfyUI's convention,
    ``noise_scaled``) rather than pure noise (diffusers')."""

    sigmas: torch.Tensor
    timesteps: torch.Tensor
    noise_scaled: bool

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def build_schedule(steps: int, shift: float, denoise: float = 1.0, scheduler: str = DEFAULT, *,
                   sampler_grid: str = "wan", sigmas=None, timesteps=None) -> Schedule:
    """The schedule of a run. ``sigmas`` (ComfyUI SIGMAS) or ``timesteps`` (lightx2v list, shifted by
    ``shift``), when given, replace steps / scheduler / denoise (and, for sigmas, shift); otherwise
    ``scheduler`` names the grid, ``"default"`` meaning ``sampler_grid`` (the sampler's own)."""
    if sigmas is not None and timesteps is not None:
        raise WanInputError("give sigmas or timesteps, not both")
    if sigmas is not None or timesteps is not None:
        s = check_sigmas(sigmas) if sigmas is not None else sigmas_from_timesteps(timesteps, shift)
        return Schedule(s, sigma_timesteps(s), True)
    check_scheduler(scheduler)
    name = sampler_grid if scheduler == DEFAULT else scheduler
    s = get_sigmas(steps, shift, denoise, schedule=name)
    return Schedule(s, get_timesteps(steps, shift, denoise, schedule=name), name in COMFY_SCHEDULERS)
