"""Every sampler against the diffusers scheduler it reproduces, over whole trajectories.

Both sides are driven by the same deterministic fake flow model (a fixed function of x and sigma,
non-linear in sigma so multistep corrections matter) and every intermediate x is compared; ours sees
it through ``flow_to_x0``, as the sampler sees any denoiser chain. Tolerance: 1e-6 absolute on
latents of magnitude ~1 (float32).
"""

import math

import pytest
import torch

from scheduler_refs import reference_scheduler, reference_truncated
from wan.errors import WanError
from wan.sampling.samplers import SAMPLER_SCHEDULES, SAMPLERS, Cancelled, flow_to_x0
from wan.sampling.schedules import get_sigmas, get_timesteps

SHAPE = (1, 4, 3, 5, 6)  # [B, C, F, H, W]
TOL = 1e-6
# the samplers written against a diffusers scheduler (ComfyUI's k-samplers: test_k_samplers.py)
DIFFUSERS_SAMPLERS = ("unipc", "euler", "dpm++_2m", "lcm")


def fake_model_factory():
    g = torch.Generator().manual_seed(1234)
    target = torch.randn(SHAPE, generator=g)  # the "x0" the model believes in
    noise_dir = torch.randn(SHAPE, generator=g)

    def model(x, sigma):
        s = float(sigma)
        # a velocity roughly of the form noise - x0 that depends on x and, non-linearly, on sigma
        return 0.6 * noise_dir - target * (1 + 0.3 * s * s) + 0.25 * x * (1 - s) + 0.1 * math.sin(3 * s) * x

    return model


def run_reference(name, steps, shift, denoise, x, model, seed):
    sched = reference_scheduler(name, shift)
    sigmas, timesteps, start = reference_truncated(sched, steps, denoise)
    gen = torch.Generator().manual_seed(seed)
    xs = []
    for i, t in enumerate(timesteps):
        xs.append(x.clone())
        v = model(x, sigmas[i])
        kw = {"generator": gen} if name == "lcm" else {}
        x = sched.step(v, t, x, return_dict=False, **kw)[0]
    xs.append(x)
    return xs


def sample(name, v_model, x, steps, shift=5.0, denoise=1.0, sigmas=None, **kw):
    """SAMPLERS[name] on the flow model ``v_model(x, sigma)`` over its schedule (or ``sigmas``)."""
    schedule = SAMPLER_SCHEDULES[name]
    if sigmas is None:
        sigmas = get_sigmas(steps, shift, denoise, schedule=schedule)
    timesteps = get_timesteps(steps, shift, denoise, schedule=schedule)
    return SAMPLERS[name](flow_to_x0(lambda x_in, step: v_model(x_in, step.sigma)), x, sigmas, timesteps, **kw)


def run_ours(name, steps, shift, denoise, x, model, seed):
    xs = []

    def recording(x_in, sigma):
        xs.append(x_in.clone())
        return model(x_in, sigma)

    gen = torch.Generator().manual_seed(seed)
    out = sample(name, recording, x, steps, shift, denoise, generator=gen)
    xs.append(out)
    return xs


@pytest.mark.parametrize("name", DIFFUSERS_SAMPLERS)
@pytest.mark.parametrize("steps,shift,denoise", [
    (1, 5.0, 1.0), (2, 5.0, 1.0), (3, 3.0, 1.0), (8, 5.0, 1.0), (20, 8.0, 1.0), (25, 12.0, 1.0),
    (16, 5.0, 0.6), (10, 1.0, 0.5), (30, 3.0, 0.9),
])
def test_trajectory_matches_diffusers(name, steps, shift, denoise):
    model = fake_model_factory()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    ref = run_reference(name, steps, shift, denoise, x, model, seed=99)
    ours = run_ours(name, steps, shift, denoise, x, model, seed=99)
    assert len(ours) == len(ref) == int(steps * denoise) + 1
    worst = max((a - b).abs().max().item() for a, b in zip(ours, ref))
    assert worst <= TOL, f"{name}: max |ours - diffusers| over the trajectory = {worst:.3g}"


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_cancel_stops_within_one_step(name):
    calls = []

    def model(x, sigma):
        calls.append(float(sigma))
        return torch.zeros_like(x)

    polls = []

    def cancel():
        polls.append(1)
        return len(calls) >= 3

    x = torch.randn(1, 2, 1, 2, 2)
    with pytest.raises(Cancelled) as info:
        sample(name, model, x, 10, cancel=cancel, generator=torch.Generator())
    assert len(calls) == 3  # the call that made cancel() true is the last one
    assert isinstance(info.value, WanError)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_callback_sees_every_step_with_x0_preview(name):
    model = fake_model_factory()
    seen = []
    x = torch.randn(SHAPE)
    sample(name, model, x, 6, callback=lambda i, n, x0: seen.append((i, n, x0.shape)), generator=torch.Generator())
    assert seen == [(i, 6, torch.Size(SHAPE)) for i in range(6)]


def test_exact_model_lands_on_x0():
    # a model that knows x0 (v = (x - x0) / sigma) makes every sampler return x0, lcm's fresh noise included
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    sigmas = get_sigmas(12, 5.0)
    x = (1 - sigmas[0]) * x0 + sigmas[0] * noise
    for name in ("unipc", "euler", "dpm++_2m", "lcm"):
        out = sample(name, lambda x, s: (x - x0) / s, x.clone(), 12, sigmas=sigmas, generator=torch.Generator())
        torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)



def test_unipc_survives_a_schedule_starting_at_pure_noise():
    # ComfyUI-style schedules may start at sigma exactly 1; diffusers nudges its own first sigma to 1 - 1e-6
    model = fake_model_factory()
    x = torch.randn(SHAPE)
    sigmas = torch.cat([torch.ones(1), get_sigmas(8, 5.0, schedule="unipc")[1:]])
    out = sample("unipc", model, x, 8, sigmas=sigmas)
    assert torch.isfinite(out).all()
    assert torch.equal(out, sample("unipc", model, x, 8))


@pytest.mark.parametrize("name", DIFFUSERS_SAMPLERS)
def test_steps_carry_index_sigma_and_timestep_of_the_schedule(name):
    # a video-to-video run (denoise < 1): the steps count from 0 within the run, each with the
    # sigma the sampler evaluates and the schedule's timestep for it
    schedule = SAMPLER_SCHEDULES[name]
    sigmas = get_sigmas(10, 3.0, 0.6, schedule=schedule)
    timesteps = get_timesteps(10, 3.0, 0.6, schedule=schedule)
    seen = []
    x = torch.randn(SHAPE)
    SAMPLERS[name](lambda x, step: seen.append(step) or x.float(), x, sigmas, timesteps, generator=torch.Generator())
    assert [(s.index, s.total) for s in seen] == [(i, 6) for i in range(6)]
    assert [float(s.sigma) for s in seen] == sigmas[:-1].tolist()
    assert [s.timestep.item() for s in seen] == timesteps.tolist()


def test_timesteps_must_match_the_sigmas():
    with pytest.raises(WanError, match="one timestep per step"):
        SAMPLERS["euler"](lambda x, step: x, torch.zeros(2), get_sigmas(4, 5.0), get_timesteps(5, 5.0))
