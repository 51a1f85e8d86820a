"""The plumbing every sampler's loop shares (``samplers.py`` and ``k_samplers.py``): the Steps of a
run, the cancel poll, the sigma tensor the scalar arithmetic runs on, and the check that stops a
run whose model call went non-finite."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import WanError, WanInputError
from ..finite import nonfinite
from ..runtime.cancel import Cancelled
from .step import Step

X0Model = Callable[[torch.Tensor, Step], torch.Tensor]


def poll(cancel: Callable[[], bool] | None, step: Step) -> None:
    """Raise ``Cancelled`` when ``cancel()`` says so; called before each model call."""
    if cancel is not None and cancel():
        raise Cancelled(f"sampling cancelled before step {step.index + 1} of {step.total}")


class NonFiniteStep(WanError):
    """A model call of the run returned NaN or Inf: every later step would stay broken, so the run
    stops instead of writing a black video."""


def finite_checked(denoise: Callable[..., torch.Tensor], expert: str | None = None) -> Callable[..., torch.Tensor]:
    """``denoise`` whose output is checked at every call (one aminmax of a latent): NaN or Inf raises
    ``NonFiniteStep`` naming the step and ``expert`` (the model that made it, when there are two)."""

    def checked(x: torch.Tensor, step: Step, *extra) -> torch.Tensor:
        out = denoise(x, step, *extra)
        bad = nonfinite(out)
        if bad is not None:
            who = f" ({expert})" if expert else ""
            raise NonFiniteStep(f"step {step.index + 1} of {step.total} produced {bad} values{who}: stopped; "
                                "check the LoRAs and their strengths, cfg and the model files")
        return out

    return checked


def make_steps(sigmas: torch.Tensor, timesteps) -> list[Step]:
    """One Step per step of the run: index, total, the sigma and the schedule's timestep."""
    total = len(sigmas) - 1
    timesteps = torch.as_tensor(timesteps).detach().cpu()
    if timesteps.shape != (total,):
        raise WanInputError(f"{tuple(timesteps.shape)} timesteps for {total} steps ({total + 1} sigmas): "
                            "give one timestep per step")
    return [Step(i, total, sigmas[i], timesteps[i]) for i in range(total)]


def prepare(sigmas: torch.Tensor) -> torch.Tensor:
    """Sigmas as a float32 CPU tensor."""
    # they stay on the CPU like diffusers' schedulers keep them, so the scalar arithmetic rounds as
    # theirs does; each scalar is moved to x's device when used
    return torch.as_tensor(sigmas).detach().to(device="cpu", dtype=torch.float32)
