"""ComfyUI's schedulers by name, explicit sigma and timestep lists, against ComfyUI 0.3.75 itself:
``comfy.samplers.calculate_sigmas`` on the ModelSamplingDiscreteFlow that ComfyUI's own
ModelSamplingSD3 node sets up (run on a stand-in model), and its BasicScheduler node for denoise."""

from __future__ import annotations

import pytest
import torch

from comfy_model_sampling import basic_scheduler, comfy_model
from refs import comfy
from wan.errors import WanInputError
from wan.job.options import SamplingOptions
from wan.sampling.comfy_schedules import COMFY_SCHEDULERS, beta_ppf
from wan.sampling.schedules import SCHEDULERS, build_schedule, get_sigmas, get_timesteps, sigmas_from_timesteps

SHIFTS = [1.0, 3.0, 5.0, 8.0, 12.0, 2.37]
STEPS = [1, 2, 3, 4, 6, 7, 10, 20, 30, 50]


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("name", list(COMFY_SCHEDULERS))
def test_named_grids_equal_comfyui_calculate_sigmas(name, shift):
    samplers = comfy("comfy.samplers")
    assert list(COMFY_SCHEDULERS) == samplers.SCHEDULER_NAMES
    ms = comfy_model(shift).get_model_object("model_sampling")
    for steps in STEPS:
        if name == "kl_optimal" and steps == 1:
            continue
        ref = samplers.calculate_sigmas(ms, name, steps)
        ours = get_sigmas(steps, shift, schedule=name)
        assert ours.dtype == torch.float32
        assert torch.equal(ours, ref), (name, shift, steps, ours, ref)
        # the DiT timestep is ComfyUI's ModelSamplingDiscreteFlow.timestep of each sigma but the last
        assert torch.equal(get_timesteps(steps, shift, schedule=name), ms.timestep(ref[:-1]))


@pytest.mark.parametrize("name", ["simple", "beta", "normal", "ddim_uniform", "karras"])
@pytest.mark.parametrize("denoise", [0.35, 0.5, 0.8])
def test_denoise_follows_comfyui_basic_scheduler(name, denoise):
    for steps in (4, 9, 20):
        ref = basic_scheduler(5.0, name, steps, denoise)
        assert torch.equal(get_sigmas(steps, 5.0, denoise, schedule=name), ref)


def test_beta_quantiles_equal_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for a, b in [(0.6, 0.6), (0.5, 0.7), (2.0, 3.0)]:
        for q in [1e-9, 0.01, 0.1, 0.25, 0.5, 0.6180339, 0.9, 0.999]:
            assert beta_ppf(q, a, b) == pytest.approx(float(scipy_stats.beta.ppf(q, a, b)), abs=1e-12)


def test_lightx2v_timesteps_are_shifted_and_equal_comfyui_simple():
    ms = comfy_model(5.0).get_model_object("model_sampling")
    simple = comfy("comfy.samplers").calculate_sigmas(ms, "simple", 4)
    ours = sigmas_from_timesteps([1000, 750, 500, 250], 5.0)
    assert torch.equal(ours, simple)
    # lightx2v's step-distill formula: sigma = shift * s / (1 + (shift - 1) * s) at s = t / 1000
    s = torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64)
    torch.testing.assert_close(ours[:-1].double(), 5 * s / (1 + 4 * s), atol=1e-7, rtol=0)
    sched = build_schedule(30, 5.0, 0.3, "beta", timesteps=[1000, 750, 500, 250])
    assert torch.equal(sched.sigmas, simple) and sched.noise_scaled
    assert torch.equal(sched.timesteps, ms.timestep(simple[:-1]))


def test_explicit_sigmas_replace_steps_shift_scheduler_and_denoise():
    sigmas = torch.tensor([0.9, 0.5, 0.1, 0.0])
    a = build_schedule(30, 5.0, 0.4, "simple", sigmas=sigmas)
    b = build_schedule(2, 1.0, 1.0, "default", sigmas=sigmas.double())
    for sched in (a, b):
        assert torch.equal(sched.sigmas, sigmas) and sched.steps == 3 and sched.noise_scaled
        assert torch.equal(sched.timesteps, torch.tensor([900.0, 500.0, 100.0]))
    opts = SamplingOptions(sigmas=sigmas)
    assert opts.sigmas == tuple(sigmas.tolist()) and hash(opts) == hash(SamplingOptions(sigmas=sigmas))


def test_default_is_the_sampler_grid_and_names_are_one_list():
    assert SCHEDULERS[0] == "default" and len(set(SCHEDULERS)) == len(SCHEDULERS)
    assert {"wan", "unipc", "euler", *COMFY_SCHEDULERS} == set(SCHEDULERS[1:])
    sched = build_schedule(10, 3.0, 0.6, "default", sampler_grid="unipc")
    assert torch.equal(sched.sigmas, get_sigmas(10, 3.0, 0.6, schedule="unipc")) and not sched.noise_scaled
    assert torch.equal(sched.timesteps, get_timesteps(10, 3.0, 0.6, schedule="unipc"))


@pytest.mark.parametrize(
    "sigmas, words",
    [
        (torch.tensor([]), "at least 2"),
        (torch.tensor([0.0]), "at least 2"),
        (torch.tensor([[1.0, 0.5, 0.0]]), "1-D"),
        (torch.tensor([1.0, 0.5, 0.7, 0.0]), "decrease"),
        (torch.tensor([1.0, 0.5, 0.5, 0.0]), "decrease"),
        (torch.tensor([1.0, 0.5, 0.2]), "end at 0"),
        (torch.tensor([14.6, 3.0, 0.0]), "[0, 1]"),
        (torch.tensor([1.0, float("nan"), 0.0]), "[0, 1]"),
    ],
)
def test_bad_sigmas_are_refused_before_any_model_work(sigmas, words):
    with pytest.raises(WanInputError, match="sigmas") as err:
        SamplingOptions(sigmas=sigmas)
    assert words in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [dict(scheduler="karas"), dict(scheduler="Simple"), dict(timesteps=()), dict(timesteps=(1000, 1000, 500)),
     dict(timesteps=(1500, 500)), dict(timesteps=(500, 0)), dict(timesteps=("a",)),
     dict(timesteps=(1000, 500), sigmas=(1.0, 0.0)), dict(scheduler="kl_optimal", steps=1)],
)
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(WanInputError):
        opts = SamplingOptions(**kwargs)
        build_schedule(opts.steps, opts.shift, opts.denoise, opts.scheduler, sigmas=opts.sigmas,
                       timesteps=opts.timesteps)
