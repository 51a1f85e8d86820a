"""CFG-Zero* and skip-layer guidance against ComfyUI 0.3.75's own nodes (``CFGZeroStar``,
``SkipLayerGuidanceDiT``): each node is run on a stand-in ModelPatcher that captures the post-CFG
function it installs, which is then called on the same x, sigma and predictions as our guidance
layer. For skip-layer guidance the predictions come from a tiny Wan DiT: ours (WanDiT) on our side,
ComfyUI's WanModel with the same weights on theirs, its layers skipped through ComfyUI's own block
replacement (``set_model_options_patch_replace``)."""


import pytest
import torch

from dit_fixtures import check, comfy_model, our_model, random_weights, tiny_config
from refs import comfy, comfy_extras
from wan.job.sample import make_dit_call, plain_forward
from wan.sampling.cfg_zero import CFGZeroStar
from wan.sampling.guidance import make_cfg_denoiser
from wan.sampling.slg import SkipLayerGuidance, skip_forward
from wan.sampling.step import Step


class Patcher:
    """What the nodes ask of a ModelPatcher: clone, model_sampling, the post-CFG function."""

    def __init__(self, shift=5.0):
        self.post_cfg = None
        self.shift = shift

    def clone(self):
        return self

    def get_model_object(self, name):
        assert name == "model_sampling"
        ms = comfy("comfy.model_sampling").ModelSamplingDiscreteFlow()
        ms.set_parameters(shift=self.shift, multiplier=1000)
        return ms

    def set_model_sampler_post_cfg_function(self, fn):
        self.post_cfg = fn


def node_function(node, *args, **kw):
    patcher = Patcher(kw.pop("shift", 5.0))
    node.execute(patcher, *args, **kw)
    return patcher.post_cfg


def at(sigma, index=0, total=10):
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    return Step(index, total, sigma, sigma * 1000)


class FakeDiT:
    """A non-linear stand-in: v depends on x, sigma and the text."""

    def __init__(self):
        self.w = torch.randn(4, 4, generator=torch.Generator().manual_seed(5)) * 0.3

    def __call__(self, x, step, cond):
        h = torch.einsum("bcfhw,cd->bdfhw", x, self.w) + cond["context"].mean(dim=1)[:, :, None, None, None]
        return torch.tanh(h) * (1 + float(step.sigma))


def texts(batch):
    g = torch.Generator().manual_seed(11)
    return {"context": torch.randn(batch, 7, 4, generator=g)}, {"context": torch.randn(batch, 7, 4, generator=g)}


@pytest.mark.parametrize("cfg", [2.0, 3.5, 6.0])
@pytest.mark.parametrize("batch", [1, 2])
def test_cfg_zero_star_matches_comfyui_node(cfg, batch):
    post = node_function(comfy_extras("nodes_cfg").CFGZeroStar)
    samplers = comfy("comfy.samplers")
    dit, (pos, neg) = FakeDiT(), texts(batch)
    x, step = torch.randn(batch, 4, 3, 4, 4, generator=torch.Generator().manual_seed(2)), at(0.7)
    ours = x - step.sigma * make_cfg_denoiser(dit, pos, neg, cfg, zero_star=CFGZeroStar())(x, step)
    x0_c, x0_u = x - step.sigma * dit(x, step, pos), x - step.sigma * dit(x, step, neg)
    denoised = samplers.cfg_function(None, x0_c, x0_u, cfg, x, step.sigma, {})
    ref = post({"cond_scale": cfg, "input": x, "cond_denoised": x0_c, "uncond_denoised": x0_u,
                "denoised": denoised})
    plain = x - step.sigma * make_cfg_denoiser(dit, pos, neg, cfg)(x, step)
    assert (plain - ref).abs().max() > 1e-3  # the scale changed the result
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)


def test_cfg_zero_star_zero_init_keeps_the_sample_on_the_first_steps():
    dit, (pos, neg) = FakeDiT(), texts(1)
    model = make_cfg_denoiser(dit, pos, neg, 4.0, zero_star=CFGZeroStar(zero_init_steps=2))
    x = torch.randn(1, 4, 3, 4, 4)
    for i in range(2):  # the paper's zero-init: the velocity of the first steps is zero, x0 = x
        assert torch.equal(model(x, at(0.9, index=i)), torch.zeros_like(x))
    assert model(x, at(0.9, index=2)).abs().max() > 0


LAYERS, SHIFT = (1,), 5.0


@pytest.fixture(scope="module")
def tiny():
    cfg = tiny_config("t2v_1_3b")
    sd = random_weights(cfg, seed=3)
    ours = our_model(cfg, sd)
    g = torch.Generator().manual_seed(8)
    pos = {"context": torch.randn(1, 7, cfg.text_dim, generator=g)}
    neg = {"context": torch.randn(1, 7, cfg.text_dim, generator=g)}
    x = torch.randn(1, cfg.out_dim, 3, 4, 6, generator=g)
    return cfg, ours, comfy_model(cfg, sd), pos, neg, x


def comfy_x0(model, x, sigma, context, transformer_options):
    # ComfyUI's model receives the text zero-padded to text_len (ours pads it itself)
    context = torch.nn.functional.pad(context, (0, 0, 0, model.text_len - context.shape[1]))
    with torch.no_grad():
        v = model(x, (sigma * 1000).reshape(1), context, transformer_options=transformer_options)
    return x - sigma * v


@pytest.mark.parametrize("percent,cfg,rescale", [(0.1, 5.0, 0.0), (0.1, 5.0, 0.7), (0.1, 1.0, 0.0),
                                                 (0.5, 5.0, 0.0)])
def test_skip_layer_guidance_matches_comfyui_node(tiny, monkeypatch, percent, cfg, rescale):
    wcfg, ours, theirs, pos, neg, x = tiny
    slg = SkipLayerGuidance(layers=LAYERS, scale=3.0, start_percent=0.01, end_percent=0.15, rescaling_scale=rescale)
    sigma = torch.tensor(comfy("comfy.model_sampling").time_snr_shift(SHIFT, 1 - percent), dtype=torch.float32)
    step = at(sigma)
    # ours: the CFG layer with the skip pass through WanDiT
    call = make_dit_call(plain_forward(ours), 3)
    skip = make_dit_call(skip_forward(ours, LAYERS), 3)
    with torch.no_grad():
        guided = make_cfg_denoiser(call, pos, neg, cfg, slg=slg, slg_call=skip, shift=SHIFT)(x, step)
        plain = make_cfg_denoiser(call, pos, neg, cfg)(x, step)
    ours_x0, plain_x0 = x - sigma * guided, x - sigma * plain
    # ComfyUI: its node's post-CFG function, its model pass replaced by ComfyUI's WanModel
    samplers = comfy("comfy.samplers")

    def calc_cond_batch(model, conds, x_in, sigma_in, model_options):
        return [comfy_x0(theirs, x_in, sigma_in, c["context"], model_options["transformer_options"]) for c in conds]

    monkeypatch.setattr(samplers, "calc_cond_batch", calc_cond_batch)
    post = node_function(comfy_extras("nodes_slg").SkipLayerGuidanceDiT, slg.scale, slg.start_percent,
                         slg.end_percent, double_layers=",".join(map(str, LAYERS)), single_layers="",
                         rescaling_scale=rescale, shift=SHIFT)
    x0_c = comfy_x0(theirs, x, sigma, pos["context"], {})
    x0_u = comfy_x0(theirs, x, sigma, neg["context"], {})
    denoised = samplers.cfg_function(None, x0_c, x0_u, cfg, x, sigma, {}) if cfg != 1 else x0_c
    ref = post({"model": None, "cond_denoised": x0_c, "cond": pos, "denoised": denoised, "sigma": sigma.reshape(1),
                "input": x, "model_options": {"transformer_options": {}}})
    active = 0.01 <= percent <= 0.15
    assert ((ref - denoised).abs().max() > 1e-4) == active  # the node guided exactly where we expect
    check(ours_x0, ref, rtol=2e-5)  # the DiT parity tolerance, twice: cfg and the skip scale amplify it
    if not active:
        assert torch.equal(ours_x0, plain_x0)


def test_skip_layer_guidance_refuses_layers_the_model_lacks(tiny):
    from wan.errors import WanInputError

    with pytest.raises(WanInputError):
        SkipLayerGuidance(layers=(99,)).check_model(len(tiny[1].blocks))
    with pytest.raises(WanInputError):
        SkipLayerGuidance(layers=())
