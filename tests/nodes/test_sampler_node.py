"""Wan Sampler run in process (the pack imported as ComfyUI imports it) gives exactly the latent of
the library's ``sample_video`` for the same model and inputs: plain, with a LoRA (chosen on the
model), with the step cache and with Enhance-A-Video. The node's side is built only from the pack's
own modules (its LoRA, option objects and conditioning), the library's side from ``wan``; the two
share nothing but the DiT module, which each run must hand back unchanged."""

from __future__ import annotations


import pytest
import torch

from dit_fixtures import our_model, random_weights
import refs
from tiny_models import write_lora
from wan.install.tiny import dit_config
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.options import RunOptions, SamplingOptions
from wan.job.sample import sample_video
from wan.runtime.cache import CacheArgs
from wan.runtime.feta import FetaArgs
from wan.weights.lora import load_lora

PACK = "wan_pack_sampler_node_test"
VARIANT = "t2v_1_3b"
W, H, FRAMES = 32, 32, 9  # three latent frames, so Enhance-A-Video has frames to look across
STEPS, CFG, SHIFT, SEED, SAMPLER = 5, 5.0, 5.0, 3, "unipc"
STRENGTH = 0.8
CACHE = dict(threshold=1.0)
FETA = dict(weight=4.0)


def pack_module(name: str):
    return refs.pack_module(name, PACK)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(2)
    cfg = dit_config(VARIANT)
    dit = our_model(cfg, random_weights(cfg, seed=4))
    lora = write_lora(tmp_path_factory.mktemp("lora") / "lora.safetensors", VARIANT, seed=12)
    g = torch.Generator().manual_seed(9)
    text = PromptEmbeds(torch.randn(1, 512, cfg.text_dim, generator=g), torch.randn(1, 512, cfg.text_dim, generator=g))
    return dit, lora, text


def node_run(dit, lora_path, text, cache=False, feta=False):
    loaders = pack_module("nodes.loaders")
    perf, sampler = pack_module("nodes.perf_options"), pack_module("nodes.sampler")
    conditioning = pack_module("wan.job.conditioning")
    loras = ()
    if lora_path is not None:
        lora = pack_module("wan.weights.lora")
        loras = lora.chain_add(None, lora.load_lora(str(lora_path)), STRENGTH)
    cache_args = perf.WanCacheArgs().make(CACHE["threshold"], 1, -1, "e0", "auto", False)[0] if cache else None
    feta_args = perf.WanEnhanceVideoArgs().make(FETA["weight"], 0.0, 1.0)[0] if feta else None
    embeds = conditioning.t2v_conditioning(W, H, FRAMES, 16)
    node_text = conditioning.PromptEmbeds(text.positive.clone(), text.negative.clone())
    out = sampler.WanSampler().sample(loaders.WanModel.loaded(dit, "tiny", loras), node_text, embeds, STEPS, CFG, SHIFT,
                                      SEED, SAMPLER, 1.0, cache_args=cache_args, feta_args=feta_args)
    return out[0]["samples"]


def library_run(dit, lora_path, text, cache=False, feta=False):
    loras = () if lora_path is None else ((load_lora(str(lora_path)), STRENGTH),)
    run = RunOptions(loras=loras, cache=CacheArgs(**CACHE) if cache else None, feta=FetaArgs(**FETA) if feta else None)
    sampling = SamplingOptions(steps=STEPS, cfg=CFG, shift=SHIFT, seed=SEED, sampler=SAMPLER)
    return sample_video(dit, text, t2v_conditioning(W, H, FRAMES, 16), sampling, run)


def _state(dit):
    return {k: v.clone() for k, v in dit.state_dict().items()}


@pytest.fixture(scope="module")
def plain(setup):
    dit, _, text = setup
    return library_run(dit, None, text)


@pytest.mark.parametrize("lora,cache,feta", [
    (False, False, False), (True, False, False), (False, True, False), (False, False, True), (True, True, True),
])
def test_node_latent_equals_library_latent(setup, plain, lora, cache, feta):
    dit, lora_path, text = setup
    before = _state(dit)
    path = lora_path if lora else None
    ours = library_run(dit, path, text, cache, feta)
    node = node_run(dit, path, text, cache, feta)
    assert node.shape == ours.shape == (1, 16, 3, H // 8, W // 8)
    assert torch.equal(node, ours)
    if lora or cache or feta:  # the option reached the model on both sides
        assert not torch.equal(ours, plain)
    after = _state(dit)
    assert all(torch.equal(before[k], after[k]) for k in before)  # LoRAs removed again
