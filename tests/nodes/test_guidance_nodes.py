"""Wan Sampler with Wan Expert Options and Wan Guidance Options, run in process, gives exactly the
latent of the library's ``sample_video`` with the same SamplingOptions fields: two tiny experts
split at a step with a cfg per step (one sampler loop), with the low-noise expert's own shift and
sampler (two loops), and with CFG-Zero*, skip-layer guidance and NAG. Bad options fail in the node
before any model work."""

from __future__ import annotations


import pytest
import torch

from dit_fixtures import our_model, random_weights
import refs
from wan.errors import WanInputError
from wan.install.tiny import dit_config
from wan.job.conditioning import PromptEmbeds, t2v_conditioning
from wan.job.options import SamplingOptions
from wan.job.sample import sample_video
from wan.sampling.cfg_zero import CFGZeroStar
from wan.sampling.guidance import GuidanceOptions
from wan.sampling.nag import NAGOptions
from wan.sampling.slg import SkipLayerGuidance

PACK = "wan_pack_guidance_node_test"
W, H, FRAMES, STEPS, SHIFT, SEED = 32, 32, 5, 4, 5.0, 3


def pack_module(name: str):
    return refs.pack_module(name, PACK)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(2)
    cfg = dit_config("t2v_1_3b")
    experts = []
    for seed in (4, 5):
        experts.append(our_model(cfg, random_weights(cfg, seed=seed)))
    g = torch.Generator().manual_seed(9)
    text = PromptEmbeds(torch.randn(1, 512, cfg.text_dim, generator=g), torch.randn(1, 512, cfg.text_dim, generator=g))
    return experts, text


def node_run(experts, text, sampler, expert_widgets, guidance_widgets=None):
    loaders, sampler_node = pack_module("nodes.loaders"), pack_module("nodes.sampler")
    guidance, conditioning = pack_module("nodes.guidance"), pack_module("wan.job.conditioning")
    expert_options = guidance.WanExpertOptions().make(**expert_widgets)[0]
    guidance_options = None
    if guidance_widgets is not None:
        guidance_options = guidance.WanGuidanceOptions().make(**guidance_widgets)[0]
    embeds = conditioning.t2v_conditioning(W, H, FRAMES, 16)
    node_text = conditioning.PromptEmbeds(text.positive.clone(), text.negative.clone())
    high, low = (loaders.WanModel.loaded(dit, "tiny", ()) for dit in experts)
    out = sampler_node.WanSampler().sample(high, node_text, embeds, STEPS, 1.0, SHIFT, SEED, sampler, 1.0,
                                           model_low=low, expert_options=expert_options,
                                           guidance_options=guidance_options)
    return out[0]["samples"]


def library_run(experts, text, sampler, **fields):
    sampling = SamplingOptions(steps=STEPS, cfg=1.0, shift=SHIFT, seed=SEED, sampler=sampler, **fields)
    return sample_video(experts[0], text, t2v_conditioning(W, H, FRAMES, 16), sampling, dit_low=experts[1])


EXPERTS = dict(switch_step=2, boundary=0.0, cfg_low=-1.0, shift_low=0.0, sampler_low="same as sampler")
GUIDANCE = dict(cfg_per_step="2, 1, 1, 1", cfg_zero_star=False, zero_init_steps=0, slg_layers="", slg_scale=3.0,
                slg_start_percent=0.01, slg_end_percent=0.15, slg_rescaling_scale=0.0, nag_scale=0.0, nag_tau=2.5,
                nag_alpha=0.25)


@pytest.mark.parametrize("sampler", ["unipc", "euler"])
def test_split_at_a_step_with_a_cfg_list(setup, sampler):
    experts, text = setup
    ours = library_run(experts, text, sampler, switch_step=2, cfg_per_step=(2.0, 1.0, 1.0, 1.0))
    node = node_run(experts, text, sampler, EXPERTS, GUIDANCE)
    assert torch.equal(node, ours)
    # the switch and the list reached the run: other switch step, other cfg, each change the latent
    assert not torch.equal(ours, library_run(experts, text, sampler, switch_step=3, cfg_per_step=(2.0, 1, 1, 1)))
    assert not torch.equal(ours, library_run(experts, text, sampler, switch_step=2))


def test_low_noise_expert_with_its_own_shift_and_sampler(setup):
    experts, text = setup
    ours = library_run(experts, text, "unipc", switch_step=2, shift_low=8.0, sampler_low="euler")
    node = node_run(experts, text, "unipc", {**EXPERTS, "shift_low": 8.0, "sampler_low": "euler"})
    assert torch.equal(node, ours)
    assert not torch.equal(ours, library_run(experts, text, "unipc", switch_step=2))


def test_guidance_options_reach_the_run(setup):
    experts, text = setup
    guidance = GuidanceOptions(cfg_zero_star=CFGZeroStar(1), slg=SkipLayerGuidance((1,), 2.0, 0.0, 0.5),
                               nag=NAGOptions(3.0, 2.0, 0.5))
    ours = library_run(experts, text, "euler", switch_step=2, cfg_per_step=(3.0, 3.0, 1.0, 1.0), guidance=guidance)
    widgets = {**GUIDANCE, "cfg_per_step": "3,3,1,1", "cfg_zero_star": True, "zero_init_steps": 1, "slg_layers": "1",
               "slg_scale": 2.0, "slg_start_percent": 0.0, "slg_end_percent": 0.5, "nag_scale": 3.0, "nag_tau": 2.0,
               "nag_alpha": 0.5}
    node = node_run(experts, text, "euler", EXPERTS, widgets)
    assert torch.equal(node, ours)
    assert not torch.equal(ours, library_run(experts, text, "euler", switch_step=2, cfg_per_step=(3.0, 3.0, 1.0, 1.0)))


@pytest.mark.parametrize("experts_widgets,guidance_widgets", [
    ({**EXPERTS, "switch_step": 4}, None),
    ({**EXPERTS, "boundary": 0.9}, None),  # with switch_step too
    (EXPERTS, {**GUIDANCE, "cfg_per_step": "2, 1, 1"}),
    (EXPERTS, {**GUIDANCE, "slg_layers": "99"}),
])
def test_bad_options_fail_before_sampling(setup, experts_widgets, guidance_widgets):
    experts, text = setup
    before = [p.clone() for p in experts[0].parameters()]
    with pytest.raises(Exception) as err:
        node_run(experts, text, "euler", experts_widgets, guidance_widgets)
    assert type(err.value).__name__ == WanInputError.__name__
    assert all(torch.equal(a, b) for a, b in zip(before, experts[0].parameters()))
