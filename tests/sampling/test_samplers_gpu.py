"""GPU runs of the sampling layer equal CPU runs (skipped without CUDA; no diffusers needed).

Tolerance 1e-5 for float32 trajectories (CUDA and CPU kernels round differently); noise is bit-equal.
"""

import math

import pytest
import torch

from wan.errors import WanInputError
from wan.sampling.context import ContextOptions, make_context_denoiser
from wan.sampling.guidance import make_cfg_denoiser
from wan.sampling.noise import make_noise, randn_like_cpu
from wan.sampling.samplers import SAMPLER_SCHEDULES, SAMPLERS, flow_to_x0
from wan.sampling.schedules import get_sigmas, get_timesteps
from wan.sampling.step import Step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
SHAPE = (1, 16, 5, 8, 8)


def fake_model():
    g = torch.Generator().manual_seed(1234)
    target, direction = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)

    def v_model(x, step):
        s = float(step.sigma)
        t, d = target.to(x.device), direction.to(x.device)
        return 0.6 * d - t * (1 + 0.3 * s * s) + 0.25 * x * (1 - s) + 0.1 * math.sin(3 * s) * x

    return flow_to_x0(v_model)


def test_same_seed_same_noise_on_gpu():
    assert torch.equal(make_noise(SHAPE, 9, device="cuda").cpu(), make_noise(SHAPE, 9))


def test_gpu_generators_are_refused():
    with pytest.raises(WanInputError):
        randn_like_cpu((2,), torch.Generator(device="cuda"))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_gpu_trajectory_matches_cpu(name):
    model = fake_model()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    sigmas = get_sigmas(20, 5.0, schedule=SAMPLER_SCHEDULES[name])
    timesteps = get_timesteps(20, 5.0, schedule=SAMPLER_SCHEDULES[name])
    cpu = SAMPLERS[name](model, x, sigmas, timesteps, generator=torch.Generator().manual_seed(1))
    gpu = SAMPLERS[name](model, x.cuda(), sigmas, timesteps, generator=torch.Generator().manual_seed(1))
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    half = SAMPLERS[name](model, x.cuda().bfloat16(), sigmas, timesteps, generator=torch.Generator().manual_seed(1))
    assert half.dtype == torch.bfloat16 and torch.isfinite(half.float()).all()


def test_context_and_cfg_layers_on_gpu():
    x = torch.randn(SHAPE)
    sigmas, timesteps = get_sigmas(8, 5.0), get_timesteps(8, 5.0)
    step0, step1 = (Step(i, 8, sigmas[i], timesteps[i]) for i in (0, 1))

    def fn(xw, s, window):
        return torch.tanh(xw) + xw.mean(2, keepdim=True)

    o = ContextOptions(3, 1, 1, "uniform_standard", "pyramid")
    gpu = make_context_denoiser(fn, o, 5)(x.cuda(), step1)
    cpu = make_context_denoiser(fn, o, 5)(x, step1)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-6, rtol=0)

    def dit(xb, s, c):
        return torch.tanh(xb * c["a"])

    pos, neg = {"a": torch.ones(1, 1, 1, 1, 1)}, {"a": torch.full((1, 1, 1, 1, 1), 0.5)}
    cpu = make_cfg_denoiser(dit, pos, neg, 5.0)(x, step0)
    gpu = make_cfg_denoiser(dit, {"a": pos["a"].cuda()}, {"a": neg["a"].cuda()}, 5.0)(x.cuda(), step0)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
