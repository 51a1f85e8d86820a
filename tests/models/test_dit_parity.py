"""WanDiT against ComfyUI's and diffusers' Wan networks: same seeded weights, same inputs, fp32 CPU.

Tolerance: max|ours - ref| <= 1e-5 * max|ref| + 1e-6 (see dit_fixtures.RTOL/ATOL).
"""

import pytest
import torch

from dit_fixtures import TINY_VARIANTS, check, comfy_model, diffusers_model, make_inputs, random_weights, tiny_config
from wan.models.dit.model import WanDiT

torch.set_num_threads(2)


def ours_model(cfg, sd):
    model = WanDiT(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def ours_out(model, inp, **kw):
    return model(inp.x, kw.pop("t", inp.t), inp.context, clip_fea=inp.clip_fea, y=inp.y,
                 vace_context=inp.vace_context, **kw)


def comfy_out(model, inp, t=None, vace_strength=1.0):
    x = inp.x if inp.y is None else torch.cat([inp.x, inp.y], dim=1)
    kw = {}
    if inp.vace_context is not None:
        kw = dict(vace_context=inp.vace_context[:, None], vace_strength=[vace_strength])
    return model(x, inp.t if t is None else t, inp.context_padded, clip_fea=inp.clip_fea, **kw)


def diffusers_out(model, inp, t=None, vace_strength=1.0):
    x = inp.x if inp.y is None else torch.cat([inp.x, inp.y], dim=1)
    kw = {}
    if inp.clip_fea is not None:
        b, n, d = inp.clip_fea.shape
        # diffusers' FLF2V embedder takes the two frames' 257 tokens as two batch entries.
        kw["encoder_hidden_states_image"] = inp.clip_fea.reshape(b * (n // 257), 257, d)
    if inp.vace_context is not None:
        kw["control_hidden_states"] = inp.vace_context
        kw["control_hidden_states_scale"] = torch.full((len(model.config.vace_layers),), vace_strength)
    return model(x, inp.t if t is None else t, inp.context_padded, return_dict=False, **kw)[0]


@pytest.fixture(scope="module", params=TINY_VARIANTS)
def setup(request):
    cfg = tiny_config(request.param)
    sd = random_weights(cfg)
    return cfg, sd, ours_model(cfg, sd)


@torch.no_grad()
def test_matches_comfyui(setup):
    cfg, sd, ours = setup
    inp = make_inputs(cfg, batch=2)
    check(ours_out(ours, inp), comfy_out(comfy_model(cfg, sd), inp))


@torch.no_grad()
def test_matches_diffusers(setup):
    cfg, sd, ours = setup
    inp = make_inputs(cfg, batch=2)
    check(ours_out(ours, inp), diffusers_out(diffusers_model(cfg, sd), inp))


@torch.no_grad()
def test_vace_strength_matches_references():
    cfg = tiny_config("vace_1_3b")
    sd = random_weights(cfg)
    ours = ours_model(cfg, sd)
    inp = make_inputs(cfg)
    out = ours_out(ours, inp, vace_strength=0.4)
    check(out, comfy_out(comfy_model(cfg, sd), inp, vace_strength=0.4))
    check(out, diffusers_out(diffusers_model(cfg, sd), inp, vace_strength=0.4))
    # Without a VACE context the VACE blocks are skipped: the plain T2V network of the same weights.
    plain = ours(inp.x, inp.t, inp.context)
    assert (plain - out).abs().max() > 1e-3


@torch.no_grad()
def test_ti2v_per_frame_and_per_token_timesteps():
    """Wan2.2 5B: ComfyUI passes one timestep per latent frame, diffusers/official one per token."""
    cfg = tiny_config("ti2v_5b")
    sd = random_weights(cfg)
    ours = ours_model(cfg, sd)
    inp = make_inputs(cfg, batch=2, frames=3, height=4, width=6)
    tokens_per_frame = (4 // 2) * (6 // 2)
    per_frame = torch.tensor([[0.0, 500.0, 500.0], [0.0, 250.0, 250.0]])
    per_token = per_frame.repeat_interleave(tokens_per_frame, dim=1)
    out = ours_out(ours, inp, t=per_frame)
    check(out, comfy_out(comfy_model(cfg, sd), inp, t=per_frame))
    ref = diffusers_model(cfg, sd)
    check(out, diffusers_out(ref, inp, t=per_token))
    check(ours_out(ours, inp, t=per_token), out, rtol=0, atol=0)
    # Per-token timesteps that differ inside a frame stay per token.
    ragged = per_token.clone()
    ragged[:, 1] = 900.0
    check(ours_out(ours, inp, t=ragged), diffusers_out(ref, inp, t=ragged))


@torch.no_grad()
def test_odd_latent_size_and_text_padding():
    """Odd latent sizes are padded and cropped as ComfyUI does; short text is zero-padded to 512."""
    cfg = tiny_config("t2v_1_3b")
    sd = random_weights(cfg)
    ours = ours_model(cfg, sd)
    inp = make_inputs(cfg, frames=2, height=5, width=3)
    out = ours_out(ours, inp)
    check(out, comfy_out(comfy_model(cfg, sd), inp))
    check(ours(inp.x, inp.t, inp.context_padded), out, rtol=0, atol=0)
