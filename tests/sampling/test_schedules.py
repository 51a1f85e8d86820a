"""Sigma schedules against the diffusers schedulers that define them (exact float32 equality)."""

import pytest
import torch

from scheduler_refs import reference_scheduler, reference_truncated
from wan.errors import WanInputError
from wan.sampling.schedules import get_sigmas, get_timesteps, shift_sigma
from wan.sampling.samplers import SAMPLER_SCHEDULES


@pytest.mark.parametrize("name", ["unipc", "dpm++_2m", "euler", "lcm"])
@pytest.mark.parametrize("steps", [1, 2, 3, 10, 30, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0, 8.0, 12.0])
@pytest.mark.parametrize("denoise", [1.0, 0.7, 0.35])
def test_sigmas_and_timesteps_equal_diffusers(name, steps, shift, denoise):
    if int(steps * denoise) < 1:
        with pytest.raises(WanInputError):
            get_sigmas(steps, shift, denoise, schedule=SAMPLER_SCHEDULES[name])
        return
    ref_sigmas, ref_timesteps, _ = reference_truncated(reference_scheduler(name, shift), steps, denoise)
    ours = get_sigmas(steps, shift, denoise, schedule=SAMPLER_SCHEDULES[name])
    assert ours.dtype == torch.float32 and ours.shape == (int(steps * denoise) + 1,)
    assert torch.equal(ours, ref_sigmas.float()), (ours, ref_sigmas)
    assert ours[-1] == 0 and bool((ours[1:] < ours[:-1]).all())
    ts = get_timesteps(steps, shift, denoise, schedule=SAMPLER_SCHEDULES[name])
    assert ts.dtype == ref_timesteps.dtype
    assert torch.equal(ts, ref_timesteps)


def test_shift_formula_and_default_grid():
    # the default ("wan") grid: uniform over [0.999, 0], then sigma' = shift*s / (1 + (shift-1)*s)
    steps, shift = 8, 5.0
    base = torch.linspace(0.999, 0.0, steps + 1, dtype=torch.float64)
    expect = shift * base / (1 + (shift - 1) * base)
    torch.testing.assert_close(get_sigmas(steps, shift).double(), expect, atol=1e-7, rtol=0)
    assert shift_sigma(0.5, 3.0) == pytest.approx(0.75)
    assert shift_sigma(0.5, 1.0) == pytest.approx(0.5)


def test_denoise_keeps_the_tail_of_the_full_schedule():
    full = get_sigmas(20, 5.0)
    part = get_sigmas(20, 5.0, 0.5)
    assert torch.equal(part, full[-11:])


@pytest.mark.parametrize(
    "kwargs",
    [dict(steps=0, shift=5.0), dict(steps=4, shift=0.0), dict(steps=4, shift=5.0, denoise=0.0),
     dict(steps=4, shift=5.0, denoise=1.5), dict(steps=4, shift=5.0, schedule="no_such_grid"), dict(steps=4, shift=5.0, schedule="default"),
     dict(steps=4, shift=5.0, denoise=0.2)],
)
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(WanInputError):
        get_sigmas(**kwargs)
