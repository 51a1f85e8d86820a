"""Seeded noise: CPU float32 draws, reproducible per seed, and the forward process diffusers uses."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from wan.errors import WanInputError
from wan.sampling.noise import make_generator, make_noise, noise_latents, randn_like_cpu
from wan.sampling.schedules import get_sigmas


def test_same_seed_same_noise_and_equal_to_a_cpu_generator():
    shape = (1, 16, 3, 8, 8)
    a, b = make_noise(shape, 42), make_noise(shape, 42)
    assert torch.equal(a, b) and a.dtype == torch.float32 and a.device.type == "cpu"
    ref = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(42))
    assert torch.equal(a, ref)
    assert not torch.equal(a, make_noise(shape, 43))


def test_dtype_is_a_cast_of_the_float32_draw():
    a32 = make_noise((2, 4, 5), 7)
    a16 = make_noise((2, 4, 5), 7, dtype=torch.bfloat16)
    assert a16.dtype == torch.bfloat16 and torch.equal(a16, a32.to(torch.bfloat16))


def test_large_and_negative_seeds_are_accepted_and_bad_ones_refused():
    make_noise((2,), 2**64 + 5)
    make_noise((2,), -1)
    for bad in (1.5, "3", True):
        with pytest.raises(WanInputError):
            make_generator(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to compare devices")
def test_same_noise_on_gpu():
    assert torch.equal(make_noise((3, 5), 9, device="cuda").cpu(), make_noise((3, 5), 9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU generator")
def test_generators_must_be_cpu_ones():
    with pytest.raises(WanInputError):
        randn_like_cpu((2,), torch.Generator(device="cuda"))


def test_noise_latents_equals_diffusers_scale_noise():
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(1, 4, 2, 3, 3, generator=g), torch.randn(1, 4, 2, 3, 3, generator=g)
    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    sched.set_timesteps(10)
    sched.set_begin_index(4)
    ref = sched.scale_noise(x0, sched.timesteps[4:5], noise)
    sigma = get_sigmas(10, 5.0, 0.6, schedule="euler")[0]
    torch.testing.assert_close(noise_latents(x0, noise, sigma), ref, atol=1e-6, rtol=0)
