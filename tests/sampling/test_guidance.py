"""CFG and the Wan2.2 expert switch (by sigma boundary), against ComfyUI's cfg_function and the official switch rule."""

import pytest
import torch

from refs import comfy
from scheduler_refs import reference_scheduler
from wan.errors import WanInputError
from wan.sampling.experts import BOUNDARY_I2V, BOUNDARY_T2V, make_expert_switch, uses_high_noise_expert
from wan.sampling.guidance import make_cfg_denoiser
from wan.sampling.samplers import SAMPLERS, flow_to_x0
from wan.sampling.schedules import get_sigmas, get_timesteps
from wan.sampling.step import Step

SHAPE = (1, 4, 3, 4, 4)


def at(sigma, index=0, total=1):
    """The Step of a model call at ``sigma`` (the layers here read only its sigma)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    return Step(index, total, sigma, sigma * 1000)


class FakeDiT:
    """A per-sample, non-linear stand-in for the DiT: v depends on x, sigma and the conditioning."""

    def __init__(self):
        g = torch.Generator().manual_seed(5)
        self.w = torch.randn(4, 4, generator=g) * 0.3
        self.batches = []

    def __call__(self, x, step, cond):
        sigma = step.sigma
        self.batches.append(x.shape[0])
        text = cond["context"].mean(dim=1)  # [B, 4]
        h = torch.einsum("bcfhw,cd->bdfhw", x, self.w) + text[:, :, None, None, None]
        return torch.tanh(h) * (1 + float(sigma)) + cond["y"] * 0.1


def conds(batch=1, length=7):
    g = torch.Generator().manual_seed(11)
    pos = {"context": torch.randn(batch, length, 4, generator=g), "y": torch.randn(batch, *SHAPE[1:], generator=g)}
    neg = {"context": torch.randn(batch, length, 4, generator=g), "y": pos["y"].clone()}
    return pos, neg


@pytest.mark.parametrize("cfg", [1.0, 3.5, 6.0])
def test_cfg_matches_comfyui_cfg_function(cfg):
    samplers = comfy("comfy.samplers")
    dit = FakeDiT()
    pos, neg = conds()
    x, sigma = torch.randn(SHAPE), torch.tensor(0.7)
    ours = make_cfg_denoiser(dit, pos, neg, cfg)(x, at(sigma))
    # ComfyUI guides denoised (x0) predictions; with x0 = x - sigma * v the two are the same
    x0_c, x0_u = x - sigma * dit(x, at(sigma), pos), x - sigma * dit(x, at(sigma), neg)
    ref_x0 = samplers.cfg_function(None, x0_c, x0_u, cfg, x, sigma, {})
    # tolerance: a few float32 ulps of |x0| ~ cfg, the two sides round in a different order
    torch.testing.assert_close(x - sigma * ours, ref_x0, atol=4e-6, rtol=0)


def test_cfg_one_calls_the_model_once_per_step():
    dit = FakeDiT()
    pos, _ = conds()
    denoise = make_cfg_denoiser(dit, pos, None, 1.0)
    SAMPLERS["unipc"](flow_to_x0(denoise), torch.randn(SHAPE), get_sigmas(6, 5.0), get_timesteps(6, 5.0))
    assert dit.batches == [1] * 6


@pytest.mark.parametrize("cfg", [2.0, 5.0])
def test_batched_equals_unbatched(cfg):
    pos, neg = conds(batch=2)
    x, step = torch.randn(2, *SHAPE[1:]), at(0.4)
    one, two = FakeDiT(), FakeDiT()
    batched = make_cfg_denoiser(one, pos, neg, cfg, batch=True)(x, step)
    separate = make_cfg_denoiser(two, pos, neg, cfg, batch=False)(x, step)
    assert one.batches == [4] and two.batches == [2, 2]
    torch.testing.assert_close(batched, separate, atol=1e-6, rtol=0)


def test_unbatchable_conditioning_falls_back_to_two_passes():
    pos, _ = conds(length=7)
    _, neg = conds(length=5)
    dit = FakeDiT()
    make_cfg_denoiser(dit, pos, neg, 4.0, batch=True)(torch.randn(SHAPE), at(0.5))
    assert dit.batches == [1, 1]


def test_cfg_without_negative_is_refused():
    with pytest.raises(WanInputError):
        make_cfg_denoiser(FakeDiT(), conds()[0], None, 5.0)


@pytest.mark.parametrize("boundary,shift,steps", [(BOUNDARY_T2V, 12.0, 40), (BOUNDARY_I2V, 5.0, 40),
                                                  (BOUNDARY_T2V, 8.0, 20), (BOUNDARY_I2V, 3.0, 10)])
@pytest.mark.parametrize("schedule", ["wan", "unipc"])
def test_expert_switch_follows_the_official_rule(boundary, shift, steps, schedule):
    # official Wan2.2 (and diffusers' WanPipeline): high-noise expert iff integer timestep t >= boundary*1000
    sigmas = get_sigmas(steps, shift, schedule=schedule)
    timesteps = get_timesteps(steps, shift, schedule=schedule)
    if schedule == "unipc":
        sched = reference_scheduler("unipc", shift)
        sched.set_timesteps(steps)
        assert torch.equal(timesteps, sched.timesteps)
    expected = ["high" if int(t) >= boundary * 1000 else "low" for t in timesteps]
    picked = []
    switch = make_expert_switch(lambda x, s: picked.append("high") or x, lambda x, s: picked.append("low") or x,
                                boundary)
    for i, s in enumerate(sigmas[:-1]):
        switch(torch.zeros(1), Step(i, steps, s, timesteps[i]))
    assert picked == expected
    assert "high" in picked and "low" in picked


def test_expert_switch_passes_extra_arguments_through():
    seen = []
    switch = make_expert_switch(lambda x, s, idx: seen.append(("high", idx)) or x,
                                lambda x, s, idx: seen.append(("low", idx)) or x, 0.5)
    switch(torch.zeros(1), at(0.9), [0, 1])
    switch(torch.zeros(1), at(0.2), [2, 3])
    assert seen == [("high", [0, 1]), ("low", [2, 3])]
    assert uses_high_noise_expert(0.5, 0.5) and not uses_high_noise_expert(0.4999, 0.5)
