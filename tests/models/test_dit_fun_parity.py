"""The Fun DiTs (inpaint, control 2.1 / 2.2 with the reference conv, 2.2 5B control on 48-channel
latents, camera 2.1 / 2.2) against ComfyUI's own networks (WanModel, CameraWanModel) on the same
seeded tiny weights, fp32 CPU.

Tolerance: max|ours - ref| <= 1e-5 * max|ref| + 1e-6 (dit_fixtures.RTOL/ATOL), as test_dit_parity.
ComfyUI's reference input: ``reference_latent`` (ref_conv); ``camera_conditions`` (control adapter).
"""

import pytest
import torch

from dit_fixtures import check, make_inputs, our_model, random_weights
from refs import comfy
from wan.errors import WanInputError
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.shapes import config_from_shapes

torch.set_num_threads(2)

FUN = ["fun_inpaint_1_3b", "fun_control_1_3b", "fun_control_ref_1_3b", "wan22_fun_control_a14b",
       "camera_1_3b", "wan22_camera_a14b", "wan22_fun_control_5b"]


def tiny(variant):
    return DIT_PRESETS[variant].tiny()


def comfy_fun(cfg, sd):
    wan = comfy("comfy.ldm.wan.model")
    kw = dict(patch_size=cfg.patch_size, text_len=cfg.text_len, in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim,
              freq_dim=cfg.freq_dim, text_dim=cfg.text_dim, out_dim=cfg.out_dim, num_heads=cfg.num_heads,
              num_layers=cfg.num_layers, eps=cfg.eps, device="cpu", dtype=torch.float32,
              operations=comfy("comfy.ops").disable_weight_init)
    if cfg.camera_in_dim:
        # ComfyUI: "camera" (with the CLIP path) or "camera_2.2"
        model = wan.CameraWanModel(model_type="camera" if cfg.has_image_emb else "camera_2.2",
                                   in_dim_control_adapter=cfg.camera_in_dim, **kw)
    else:
        model = wan.WanModel(model_type="i2v" if cfg.has_image_emb else "t2v",
                             in_dim_ref_conv=cfg.ref_in_dim or None, **kw)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def extras(cfg, inp, seed=5):
    g = torch.Generator().manual_seed(seed)
    b, _, f, h, w = inp.x.shape
    out = {}
    if cfg.camera_in_dim:
        out["camera"] = torch.randn(1, cfg.camera_in_dim, f, 8 * h, 8 * w, generator=g)
    if cfg.ref_in_dim:
        out["reference"] = torch.randn(1, cfg.ref_in_dim, h, w, generator=g)
    return out


@pytest.mark.parametrize("variant", FUN)
@torch.no_grad()
def test_fun_dit_matches_comfyui(variant):
    cfg = tiny(variant)
    sd = random_weights(cfg, seed=3)
    ours, ref = our_model(cfg, sd), comfy_fun(cfg, sd)
    inp = make_inputs(cfg, batch=2)
    extra = extras(cfg, inp)
    got = ours(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y, **extra)
    kw = {}
    if "camera" in extra:
        kw["camera_conditions"] = extra["camera"]
    if "reference" in extra:
        kw["reference_latent"] = extra["reference"].expand(inp.x.shape[0], -1, -1, -1)
    want = ref(torch.cat([inp.x, inp.y], dim=1), inp.t, inp.context_padded, clip_fea=inp.clip_fea, **kw)
    err = check(got, want)
    print(f"{variant}: max err {err:.2e}")
    if extra:  # the extra input changes the output (so the comparison above covers it)
        plain = ours(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y)
        assert (plain - got).abs().max() > 1e-3


@pytest.mark.parametrize("variant", FUN)
def test_fun_config_read_from_shapes(variant):
    cfg = DIT_PRESETS[variant]
    with torch.device("meta"):
        sd = our_model.__globals__["WanDiT"](cfg).state_dict()
    assert config_from_shapes(sd).variant == variant


def test_wrong_camera_and_reference_sizes_are_named():
    cfg = tiny("wan22_camera_a14b")
    model = our_model(cfg, random_weights(cfg))
    inp = make_inputs(cfg)
    with pytest.raises(WanInputError, match="camera embedding"):
        model(inp.x, inp.t, inp.context, y=inp.y, camera=torch.zeros(1, 24, 2, 32, 48))
    cfg = tiny("wan22_fun_control_a14b")
    model = our_model(cfg, random_weights(cfg))
    inp = make_inputs(cfg)
    with pytest.raises(WanInputError, match="reference latent"):
        model(inp.x, inp.t, inp.context, y=inp.y, reference=torch.zeros(1, 16, 8, 8))
