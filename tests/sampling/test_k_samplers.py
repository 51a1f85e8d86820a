"""ComfyUI's k-diffusion samplers (and lcm on ComfyUI's noise stream) against ComfyUI's own functions
in ``comfy/k_diffusion/sampling.py``, noise included.

The reference side runs exactly what ComfyUI's KSampler runs for a flow model: the initial noise of
``comfy.sample.prepare_noise`` for the seed, sigmas from ``comfy.samplers.calculate_sigmas`` (the
"simple" scheduler of ``ModelSamplingDiscreteFlow`` with the shift, which starts at sigma 1), the
sampler function with ``extra_args={"seed": seed}`` (so it seeds its own Gaussian or Brownian-tree
noise), over a model whose ``model_sampling`` is CONST, as ComfyUI builds it for Wan. Denoisers: a
deterministic toy x0-predictor, and ComfyUI's own Wan network against ours on the same tiny weights.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from comfy_model_sampling import basic_scheduler
from dit_fixtures import comfy_model, our_model, random_weights, tiny_config
from refs import comfy
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.options import SamplingOptions
from wan.job.sample import sample_video
from wan.sampling.noise import make_noise
from wan.sampling.samplers import SAMPLERS, flow_to_x0
from wan.sampling.schedules import get_sigmas, get_timesteps

# ours -> ComfyUI's k-diffusion function
K_SAMPLERS = {
    "euler_ancestral": "sample_euler_ancestral",
    "dpm++_sde": "sample_dpmpp_sde",
    "dpm++_2m_sde": "sample_dpmpp_2m_sde",
    "res_multistep": "sample_res_multistep",
    "er_sde": "sample_er_sde",
    "lcm": "sample_lcm",
}
STOCHASTIC = [n for n in K_SAMPLERS if n != "res_multistep"]  # ComfyUI runs res_multistep with eta 0
SHAPE = (1, 4, 3, 5, 6)
TOL = 1e-6  # absolute, on latents of magnitude ~4 (float32)


def model_sampling(shift: float):
    ms = comfy("comfy.model_sampling")
    # what comfy.model_base.model_sampling builds for ModelType.FLOW (and ModelSamplingSD3 patches)
    cls = type("ModelSampling", (ms.ModelSamplingDiscreteFlow, ms.CONST), {})
    m = cls()
    m.set_parameters(shift=shift, multiplier=1000)
    return m


class KModel:
    """The object ComfyUI's samplers receive (KSamplerX0Inpaint), reduced to what they read: a call
    ``(x, sigma[B]) -> x0`` and the model sampling behind ``inner_model``."""

    def __init__(self, x0_fn, ms):
        self.x0_fn = x0_fn
        patcher = SimpleNamespace(get_model_object=lambda name: {"model_sampling": ms}[name])
        self.inner_model = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=ms), model_patcher=patcher)

    def __call__(self, x, sigma, **kw):
        return self.x0_fn(x, sigma[0])


def comfy_run(name, x0_fn, shift, steps, seed, shape=SHAPE, sigmas=None):
    ms = model_sampling(shift)
    if sigmas is None:
        sigmas = comfy("comfy.samplers").calculate_sigmas(ms, "simple", steps)
    latent = torch.zeros(shape)
    noise = comfy("comfy.sample").prepare_noise(latent, seed)
    x = ms.noise_scaling(sigmas[0], noise, latent)  # KSAMPLER.sample
    fn = getattr(comfy("comfy.k_diffusion.sampling"), K_SAMPLERS[name])
    return fn(KModel(x0_fn, ms), x, sigmas, extra_args={"seed": seed}, disable=True), sigmas


def toy_x0():
    g = torch.Generator().manual_seed(1234)
    target, direction = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)

    def x0(x, sigma):
        s = float(sigma)  # a flow velocity that depends on x and, non-linearly, on sigma
        v = 0.6 * direction - target * (1 + 0.3 * s * s) + 0.25 * x * (1 - s) + 0.1 * math.sin(3 * s) * x
        return x - sigma * v

    return x0


def ours_run(name, x0_fn, sigmas, shift, seed, shape=SHAPE):
    x = make_noise(shape, seed)
    return SAMPLERS[name](lambda x, step: x0_fn(x, step.sigma), x, sigmas, sigmas[:-1] * 1000, seed=seed, shift=shift)


@pytest.mark.parametrize("name", list(K_SAMPLERS))
@pytest.mark.parametrize("shift,steps", [(5.0, 4), (5.0, 8), (8.0, 6), (1.0, 3)])
def test_equals_comfyui_on_its_simple_schedule(name, shift, steps):
    ref, sigmas = comfy_run(name, toy_x0(), shift, steps, seed=123)
    assert float(sigmas[0]) == 1.0  # so the log-SNR samplers' first-sigma offset is exercised
    out = ours_run(name, toy_x0(), sigmas, shift, seed=123)
    worst = (out - ref).abs().max().item()
    assert worst <= TOL, f"{name}: max |ours - ComfyUI| = {worst:.3g}"


@pytest.mark.parametrize("name", list(K_SAMPLERS))
def test_equals_comfyui_on_a_grid_below_one(name):
    # a grid that does not start at 1 (no offset, noise scaled by the first sigma), large seed
    sigmas = get_sigmas(7, 3.0)
    seed = 2**64 - 5
    ref, _ = comfy_run(name, toy_x0(), 3.0, 7, seed, sigmas=sigmas)
    x = sigmas[0] * make_noise(SHAPE, seed)
    out = SAMPLERS[name](lambda x, step: toy_x0()(x, step.sigma), x, sigmas, sigmas[:-1] * 1000, seed=seed, shift=3.0)
    assert (out - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("name", STOCHASTIC)
def test_the_comparison_covers_the_noise(name):
    # the same run with another seed's sampler noise (same initial x) moves the result visibly
    ms = model_sampling(5.0)
    sigmas = comfy("comfy.samplers").calculate_sigmas(ms, "simple", 6)
    x = make_noise(SHAPE, 5)
    fn = getattr(comfy("comfy.k_diffusion.sampling"), K_SAMPLERS[name])
    a = fn(KModel(toy_x0(), ms), x.clone(), sigmas, extra_args={"seed": 5}, disable=True)
    b = fn(KModel(toy_x0(), ms), x.clone(), sigmas, extra_args={"seed": 6}, disable=True)
    assert (a - b).abs().max().item() > 1e-2
    ours = SAMPLERS[name](lambda x, step: toy_x0()(x, step.sigma), x, sigmas, sigmas[:-1] * 1000, seed=5, shift=5.0)
    assert (ours - a).abs().max().item() <= TOL


def test_lcm_streams_differ_and_diffusers_continues_the_generator():
    sigmas = get_sigmas(4, 5.0, schedule="euler")
    x0 = toy_x0()
    model = lambda x, step: x0(x, step.sigma)  # noqa: E731
    timesteps = get_timesteps(4, 5.0, schedule="euler")
    comfy_stream = SAMPLERS["lcm"](model, make_noise(SHAPE, 9), sigmas, timesteps, seed=9)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(SHAPE, generator=g)
    diffusers_stream = SAMPLERS["lcm"](model, x, sigmas, timesteps, generator=g)
    rel = ((comfy_stream - diffusers_stream).norm() / diffusers_stream.norm()).item()
    assert rel > 0.1


def test_dpmpp_sde_steps_carry_offset_and_midpoint_sigmas():
    ms = model_sampling(5.0)
    sigmas = comfy("comfy.samplers").calculate_sigmas(ms, "simple", 3)
    seen = []
    SAMPLERS["dpm++_sde"](lambda x, step: seen.append(step) or x.float(), torch.zeros(SHAPE), sigmas,
                          torch.tensor([1000.0, 900.0, 800.0]), seed=0, shift=5.0)
    # two calls per step but the last (to sigma 0); the first at ComfyUI's offset first sigma
    assert [s.index for s in seen] == [0, 0, 1, 1, 2]
    offset = 5.0 * (1 - 1e-4) / (1 + 4.0 * (1 - 1e-4))
    assert float(seen[0].sigma) == pytest.approx(offset, abs=1e-7)
    for s in (seen[0], seen[1], seen[3]):  # off the schedule: ComfyUI's timestep, sigma * 1000
        assert float(s.timestep) == pytest.approx(float(s.sigma) * 1000, rel=1e-6)
    # on the schedule: its sigma and the timestep given for it
    assert [(float(s.sigma), float(s.timestep)) for s in (seen[2], seen[4])] == [
        (float(sigmas[1]), 900.0), (float(sigmas[2]), 800.0)]


# -- a tiny Wan DiT: ComfyUI's network and sampler against ours -------------------------------------
W, H, FRAMES, SEED = 32, 32, 5, 77


@pytest.fixture(scope="module")
def tiny():
    cfg = tiny_config("t2v_1_3b")
    sd = random_weights(cfg, seed=4)
    dit = our_model(cfg, sd)
    context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(3))
    return dit, comfy_model(cfg, sd), context


def comfy_x0(net, context, timestep_of=lambda sigma: sigma * 1000):
    def x0(x, sigma):  # BaseModel.apply_model for CONST: x - v * sigma, v = net(x, timestep(sigma))
        with torch.no_grad():
            v = net(x, timestep_of(sigma).reshape(1).float(), context)
        return x - v.float() * sigma

    return x0


@pytest.mark.parametrize("name", list(K_SAMPLERS))
def test_tiny_dit_equals_comfyui(tiny, name):
    dit, net, context = tiny
    shape = (1, 16, 2, H // 8, W // 8)
    ref, sigmas = comfy_run(name, comfy_x0(net, context), 5.0, 4, SEED, shape=shape)
    model = flow_to_x0(lambda x, step: dit(x, step.timestep.reshape(1).float(), context))
    out = SAMPLERS[name](model, make_noise(shape, SEED), sigmas, sigmas[:-1] * 1000, seed=SEED, shift=5.0)
    scale = ref.abs().max().item()
    assert (out - ref).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm++_sde", "er_sde", "lcm"])
def test_sample_video_seeds_as_comfyui(tiny, name):
    # the whole run path: sample_video's seeding (the comfy stream) and latent statistics against
    # ComfyUI's KSampler pieces and Wan21 latent format, on the sampler's own grid and timesteps
    dit, net, context = tiny
    steps, shift = 4, 5.0
    sampling = SamplingOptions(steps=steps, cfg=1.0, shift=shift, seed=SEED, sampler=name, noise="comfy")
    ours = sample_video(dit, PromptEmbeds(context, None), t2v_conditioning(W, H, FRAMES, 16), sampling)
    if name == "lcm":  # lcm keeps diffusers' grid; ComfyUI's samplers default to its "simple" scheduler
        sigmas = get_sigmas(steps, shift, schedule="euler")
        on_grid = dict(zip(sigmas[:-1].tolist(), get_timesteps(steps, shift, schedule="euler").tolist()))
    else:
        sigmas = basic_scheduler(shift, "simple", steps)
        on_grid = {}

    def timestep_of(sigma):  # the schedule's timestep where there is one, else ComfyUI's sigma * 1000
        return torch.tensor(on_grid.get(float(sigma), float(sigma) * 1000))

    shape = (1, 16, (FRAMES - 1) // 4 + 1, H // 8, W // 8)
    ref, _ = comfy_run(name, comfy_x0(net, context, timestep_of), shift, steps, SEED, shape=shape, sigmas=sigmas)
    ref = comfy("comfy.latent_formats").Wan21().process_out(ref)
    assert (ours - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", list(K_SAMPLERS))
def test_equals_comfyui_on_the_gpu(name):
    # ComfyUI draws its Gaussian sampler noise from a generator on the latent's device: so do we
    x0_cpu = toy_x0()

    def x0(x, sigma):
        return x0_cpu(x.cpu(), sigma.cpu()).to(x.device)

    ms = model_sampling(5.0)
    sigmas = comfy("comfy.samplers").calculate_sigmas(ms, "simple", 6)
    x = make_noise(SHAPE, 11, device="cuda")
    fn = getattr(comfy("comfy.k_diffusion.sampling"), K_SAMPLERS[name])
    ref = fn(KModel(x0, ms), x.clone(), sigmas.cuda(), extra_args={"seed": 11}, disable=True)
    out = SAMPLERS[name](lambda x, step: x0(x, step.sigma), x, sigmas, sigmas[:-1] * 1000, seed=11, shift=5.0)
    assert out.is_cuda and (out - ref).abs().max().item() <= 1e-5
