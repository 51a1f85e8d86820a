"""Phantom conditioning and dual CFG against ComfyUI: WanPhantomSubjectToVideo (in-process, on a
ComfyUI VAE holding the same seeded tiny weights as ours) and one denoise step of its
DualCFGGuider's predict_noise, whose three passes run ComfyUI's WanModel on the node's own
conditionings (time_dim_concat normalised as model_base.WAN21.extra_conds does), against our
sampler's dual CFG on our conditioning and DiT.

Tolerance: subject latents max|ours - ComfyUI| <= 1e-5 * max|ComfyUI| (the two VAEs' agreement);
the denoised prediction <= 1e-5 * max + 1e-6 (the DiT parity tolerance).
"""

import pytest
import torch
from dit_fixtures import check, comfy_model, our_model, tiny_config
from dit_fixtures import random_weights as dit_weights
from refs import comfy, comfy_extras
from vae_fixtures import rel_err, vae21_with_comfy

from wan.errors import WanInputError
from wan.job.conditioning import PromptEmbeds
from wan.job.conditioning_phantom import check_phantom, phantom_conditioning
from wan.job.options import RunOptions
from wan.job.dit_conds import dit_conds
from wan.job.sample import make_dit_call
from wan.sampling.dual_cfg import make_dual_cfg_denoiser
from wan.sampling.step import Step

TOL = 1e-5
W, H, FRAMES = 48, 32, 9


@pytest.fixture(scope="module")
def nodes_wan():
    return comfy_extras("nodes_wan")


@pytest.fixture(scope="module")
def vae21():
    return vae21_with_comfy(seed=43)


def _text(seed):
    g = torch.Generator().manual_seed(seed)
    cfg = tiny_config("t2v_1_3b")
    short = torch.randn(1, 7, cfg.text_dim, generator=g)
    return short, torch.cat([short, short.new_zeros(1, cfg.text_len - 7, cfg.text_dim)], dim=1)


def _phantom(nodes_wan, ref_vae, images, length=FRAMES):
    pos, neg = _text(1), _text(2)
    out = nodes_wan.WanPhantomSubjectToVideo.execute([[pos[1], {}]], [[neg[1], {}]], ref_vae, W, H, length, 1,
                                                     images)
    return pos, neg, out


def test_subject_latents_match_wan_phantom_subject_to_video(nodes_wan, vae21):
    ours_vae, ref_vae = vae21
    images = torch.cat([torch.rand(2, 64, 40, 3), torch.rand(2, 64, 40, 3)])  # other size and aspect
    _, _, (positive, negative_text, negative_img_text, latent) = _phantom(nodes_wan, ref_vae, images)
    ours = phantom_conditioning(ours_vae, images, W, H, FRAMES, subject_cfg=4.0)
    assert ours.latent_shape() == tuple(latent["samples"].shape)
    fmt = comfy("comfy.latent_formats").Wan21()
    want = fmt.process_in(positive[0][1]["time_dim_concat"])
    assert ours.subject.shape == want.shape == (1, 16, 4, H // 8, W // 8)
    err = rel_err(ours.subject, want)
    print(f"Phantom subject latents rel err {err:.2e}")
    assert err <= TOL
    assert torch.equal(negative_text[0][1]["time_dim_concat"], positive[0][1]["time_dim_concat"])
    assert fmt.process_in(negative_img_text[0][1]["time_dim_concat"]).abs().max() < 1e-5  # zero frames
    assert ours.subject_cfg == 4.0


def test_more_images_than_frames_are_cut_as_comfyui(nodes_wan, vae21):
    ours_vae, ref_vae = vae21
    images = torch.rand(7, 32, 48, 3)
    _, _, (positive, *_rest) = _phantom(nodes_wan, ref_vae, images, length=5)
    with pytest.warns(Warning, match="first 5"):
        ours = phantom_conditioning(ours_vae, images, W, H, 5)
    assert ours.subject.shape[2] == positive[0][1]["time_dim_concat"].shape[2] == 5


def test_no_images_is_plain_text_to_video(vae21):
    cond = phantom_conditioning(vae21[0], None, W, H, FRAMES)
    assert cond.subject is None and cond.y is None
    with pytest.raises(WanInputError, match="subject_cfg"):
        phantom_conditioning(vae21[0], None, W, H, FRAMES, subject_cfg=float("nan"))


@pytest.mark.parametrize("cfg_conds,cfg_subject", [(7.5, 5.0), (3.0, 1.0), (1.0, 1.0)])
@torch.no_grad()
def test_dual_cfg_step_matches_dual_cfg_guider(nodes_wan, vae21, monkeypatch, cfg_conds, cfg_subject):
    ours_vae, ref_vae = vae21
    images = torch.rand(2, 40, 56, 3)
    pos, neg, (positive, negative_text, negative_img_text, latent) = _phantom(nodes_wan, ref_vae, images)
    cfg = tiny_config("t2v_1_3b")
    sd = dit_weights(cfg, seed=9)
    ours_dit, ref_dit = our_model(cfg, sd), comfy_model(cfg, sd)
    fmt = comfy("comfy.latent_formats").Wan21()
    sigma = torch.tensor(0.7)
    x = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(5))
    calls = []

    def calc_cond_batch(model, conds, x_in, timestep, model_options):
        out = []
        for c in conds:
            if c is None:
                out.append(torch.zeros_like(x_in))
                continue
            calls.append(c)
            tdc = fmt.process_in(c[0][1]["time_dim_concat"])
            v = ref_dit(x_in, (timestep * 1000).view(1), c[0][0], time_dim_concat=tdc)
            out.append(x_in - timestep * v)
        return out

    samplers = comfy("comfy.samplers")
    monkeypatch.setattr(samplers, "calc_cond_batch", calc_cond_batch)
    guider_cls = comfy_extras("nodes_custom_sampler").Guider_DualCFG
    guider = guider_cls.__new__(guider_cls)
    guider.inner_model = None
    guider.conds = {"positive": positive, "middle": negative_text, "negative": negative_img_text}
    guider.set_cfg(cfg_conds, cfg_subject)
    want = guider.predict_noise(x, sigma)

    ours = phantom_conditioning(ours_vae, images, W, H, FRAMES, subject_cfg=cfg_subject)
    p, n = dit_conds(PromptEmbeds(pos[0], neg[0]), ours, torch.device("cpu"))
    passes = []

    def counted(step, xx, t, context, **kw):
        passes.append(1)
        return ours_dit(xx, t, context, **kw)

    denoise = make_dual_cfg_denoiser(make_dit_call(counted, x.shape[2]), p, n, cfg_conds, ours.subject_cfg)
    v = denoise(x, Step(0, 1, sigma, sigma * 1000))
    got = x - sigma * v
    err = check(got, want)
    print(f"dual CFG ({cfg_conds}, {cfg_subject}): max err {err:.2e}, passes {len(passes)}")
    assert len(passes) == len(calls)  # the same passes skipped as ComfyUI's cfg1 optimization


def test_phantom_refusals(vae21):
    cond = phantom_conditioning(vae21[0], torch.rand(1, 32, 48, 3), W, H, FRAMES)
    i2v = our_model(tiny_config("i2v_14b"), dit_weights(tiny_config("i2v_14b")))
    with pytest.raises(WanInputError, match="text-to-video"):
        check_phantom(cond, i2v, RunOptions(), None)
    from wan.sampling.context import ContextOptions
    with pytest.raises(WanInputError, match="context windows"):
        check_phantom(cond, None, RunOptions(context=ContextOptions()), None)
