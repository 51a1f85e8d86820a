"""Wan Sampler's schedule inputs, run in process (the pack imported as ComfyUI imports it): a SIGMAS
input made by ComfyUI's own BasicScheduler / SplitSigmas nodes gives exactly the latent of the
library's ``sample_video`` with those sigmas; the ``scheduler`` widget gives the same latent as the
SIGMAS of ComfyUI's BasicScheduler with that scheduler; bad widget values fail validation."""

from __future__ import annotations


import pytest
import torch

from comfy_model_sampling import basic_scheduler, split_sigmas
from dit_fixtures import our_model, random_weights
import refs
from wan.install.tiny import dit_config
from wan.job.conditioning import PromptEmbeds, normalize_latent, t2v_conditioning
from wan.job.options import SamplingOptions
from wan.job.sample import sample_video
from wan.sampling.noise import make_generator, randn_like_cpu

PACK = "wan_pack_sampler_sigmas_test"
VARIANT = "t2v_1_3b"
W, H, FRAMES = 32, 32, 5
STEPS, CFG, SHIFT, SEED = 4, 5.0, 5.0, 3


def pack_module(name: str):
    return refs.pack_module(name, PACK)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(2)
    cfg = dit_config(VARIANT)
    dit = our_model(cfg, random_weights(cfg, seed=4))
    g = torch.Generator().manual_seed(9)
    text = PromptEmbeds(torch.randn(1, 512, cfg.text_dim, generator=g), torch.randn(1, 512, cfg.text_dim, generator=g))
    return dit, text


def node_run(dit, text, sampler="euler", **optional):
    loaders, sampler_node = pack_module("nodes.loaders"), pack_module("nodes.sampler")
    conditioning = pack_module("wan.job.conditioning")
    embeds = conditioning.t2v_conditioning(W, H, FRAMES, 16)
    node_text = conditioning.PromptEmbeds(text.positive.clone(), text.negative.clone())
    # steps 30, shift 1 and denoise 0.5 on the widgets: a SIGMAS input must override all three
    steps, shift, denoise = (30, 1.0, 0.5) if "sigmas" in optional else (STEPS, SHIFT, 1.0)
    out = sampler_node.WanSampler().sample(loaders.WanModel.loaded(dit, "tiny", ()), node_text, embeds, steps, CFG, shift,
                                           SEED, sampler, denoise, **optional)
    return out[0]["samples"]


def library_run(dit, text, sigmas, sampler="euler"):
    sampling = SamplingOptions(steps=STEPS, cfg=CFG, shift=SHIFT, seed=SEED, sampler=sampler, sigmas=sigmas)
    return sample_video(dit, text, t2v_conditioning(W, H, FRAMES, 16), sampling)


@pytest.mark.parametrize("sampler", ["euler", "unipc"])
def test_basic_scheduler_sigmas_give_the_library_latent(setup, sampler):
    dit, text = setup
    sigmas = basic_scheduler(SHIFT, "beta", STEPS)
    node = node_run(dit, text, sampler, sigmas=sigmas)
    assert torch.equal(node, library_run(dit, text, sigmas, sampler))
    # and the widget path with ComfyUI's scheduler name takes the same sigmas
    assert torch.equal(node_run(dit, text, sampler, scheduler="beta"), node)
    assert not torch.equal(node_run(dit, text, sampler), node)  # the sampler's own grid differs


def test_split_sigmas_low_part_starts_at_its_first_sigma(setup):
    dit, text = setup
    _, low = split_sigmas(basic_scheduler(SHIFT, "simple", 6), 3)
    assert 0 < float(low[0]) < 1 and float(low[-1]) == 0
    node = node_run(dit, text, sigmas=low)
    assert torch.equal(node, library_run(dit, text, low))
    # ComfyUI starts a run from its empty latent at sigmas[0] * noise, not from pure noise: with a
    # model predicting v = 0, euler never moves, so the result is that start
    calls = []

    class StillModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))
            self.cfg = dit.cfg

        def forward(self, x, t, context, **kw):
            calls.append(float(t.flatten()[0]))
            return torch.zeros_like(x)

    out = library_run(StillModel(), text, low)
    assert calls[0] == pytest.approx(float(low[0]) * 1000, rel=1e-6)
    shape = t2v_conditioning(W, H, FRAMES, 16).latent_shape()
    noise = randn_like_cpu(shape, make_generator(SEED), torch.device("cpu"))
    torch.testing.assert_close(normalize_latent(out), float(low[0]) * noise, atol=1e-5, rtol=1e-5)


def test_scheduler_widget_is_validated():
    node = pack_module("nodes.sampler").WanSampler
    assert node.VALIDATE_INPUTS(scheduler="simple") is True
    assert node.VALIDATE_INPUTS() is True
    assert "unknown scheduler 'karas'" in node.VALIDATE_INPUTS(scheduler="karas")
    inputs = node.INPUT_TYPES()
    assert "scheduler" in inputs["optional"] and inputs["optional"]["sigmas"][0] == "SIGMAS"
    assert "scheduler" not in inputs["required"]


def test_bad_sigmas_fail_before_sampling(setup):
    dit, text = setup
    err = pack_module("wan.errors").WanInputError
    with pytest.raises(err, match="end at 0"):
        node_run(dit, text, sigmas=torch.tensor([1.0, 0.5]))
