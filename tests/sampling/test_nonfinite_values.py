"""NaN/Inf numbers are refused by the option objects (one message for the CLI, the API and the nodes),
and a model call that returns NaN stops the sampler naming the step."""

import math

import pytest
import torch

from wan.errors import WanInputError
from wan.job.options import SamplingOptions
from wan.runtime.cache import CacheArgs
from wan.runtime.feta import FetaArgs
from wan.sampling.context import ContextOptions
from wan.sampling.loop import NonFiniteStep, finite_checked
from wan.sampling.nag import NAGOptions
from wan.sampling.samplers import SAMPLERS, flow_to_x0
from wan.sampling.schedules import get_sigmas
from wan.sampling.slg import SkipLayerGuidance

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("field", ["cfg", "shift", "denoise", "cfg_low", "shift_low", "boundary"])
@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_sampling_numbers(field, value):
    with pytest.raises(WanInputError, match=rf"^{field} is {value}: give a finite number"):
        SamplingOptions(steps=4, **{field: value})


def test_cfg_per_step_and_sigmas():
    with pytest.raises(WanInputError, match=r"cfg_per_step\[2\] is nan"):
        SamplingOptions(steps=4, cfg_per_step=(1.0, 2.0, NAN, 1.0))
    with pytest.raises(WanInputError, match=r"sigmas\[1\] is inf"):
        SamplingOptions(sigmas=(1.0, INF, 0.0))


@pytest.mark.parametrize("make, message", [
    (lambda: CacheArgs(threshold=NAN), "cache threshold is nan"),
    (lambda: FetaArgs(weight=NAN), "Enhance-A-Video weight is nan"),
    (lambda: FetaArgs(end_percent=INF), "Enhance-A-Video end_percent is inf"),
    (lambda: NAGOptions(scale=NAN), "NAG scale is nan"),
    (lambda: NAGOptions(tau=INF), "NAG tau is inf"),
    (lambda: NAGOptions(alpha=NAN), "NAG alpha is nan"),
    (lambda: SkipLayerGuidance(scale=NAN), "skip-layer guidance scale is nan"),
    (lambda: ContextOptions.from_pixel_frames(NAN, 16), "context_frames is nan"),
])
def test_option_numbers(make, message):
    with pytest.raises(WanInputError, match=message):
        make()


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_nan_model_call_stops_at_its_step(sampler):
    """A denoiser that goes NaN at the third step: every sampler stops there, naming step 3 of 6,
    instead of running the remaining steps."""
    calls = []

    def denoise(x, step):
        calls.append(step.index)
        v = torch.full_like(x, 0.1)
        return v * math.nan if step.index == 2 else v

    sigmas = get_sigmas(6, 5.0, schedule="simple")
    timesteps = sigmas[:-1] * 1000
    x = torch.randn(1, 4, 1, 2, 2)
    model = flow_to_x0(finite_checked(denoise, "low-noise expert"))
    with pytest.raises(NonFiniteStep, match=r"step 3 of 6 produced NaN values \(low-noise expert\)"):
        SAMPLERS[sampler](model, x, sigmas, timesteps, seed=1, generator=torch.Generator().manual_seed(1))
    assert max(calls) == 2 and calls.count(2) == 1
