"""The HuMo DiTs (1.7B on the 1.3B network, 17B on the 14B one with 20 conditioning channels) against
ComfyUI's own model (supported_models.WAN21_HuMo -> model_base.WAN21_HuMo with HumoWanModel) on the
same seeded tiny weights, fp32 CPU: its ``extra_conds`` builds what its network receives (the 17B
model's blank conditioning, the reference latent's channels) from the same audio and reference.

Tolerance: max|ours - ref| <= 1e-5 * max|ref| + 1e-6 (dit_fixtures.RTOL/ATOL), as test_dit_parity.
"""

import pytest
import torch

from dit_fixtures import check, make_inputs, our_model, random_weights
from refs import comfy
from wan.errors import WanInputError
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.models.dit.shapes import config_from_shapes

torch.set_num_threads(2)

HUMO = ["humo_1_7b", "humo_17b"]


def comfy_humo(cfg, sd):
    """ComfyUI's WAN21_HuMo base model (extra_conds, process_latent_in) holding ``sd``."""
    unet = dict(image_model="wan2.1", model_type="humo", dim=cfg.dim, in_dim=cfg.in_dim, out_dim=cfg.out_dim,
                ffn_dim=cfg.ffn_dim, num_heads=cfg.num_heads, num_layers=cfg.num_layers, patch_size=cfg.patch_size,
                freq_dim=cfg.freq_dim, window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=cfg.eps)
    config = comfy("comfy.supported_models").WAN21_HuMo(unet)
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    model.diffusion_model.load_state_dict(sd, strict=True)
    model.diffusion_model.eval()
    return model


def whisper_windows(frames, seed=9, batch=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 8, 5, 1280, generator=g)


def comfy_forward(model, inp, audio, raw_ref):
    # ComfyUI's sampler repeats each condition to the batch before the network sees it
    b = inp.x.shape[0]
    audio = audio.expand(b, *audio.shape[1:])
    raw_ref = None if raw_ref is None else raw_ref.expand(b, *raw_ref.shape[1:])
    conds = {k: v.cond for k, v in model.extra_conds(
        noise=inp.x, device=inp.x.device, audio_embed=audio, reference_latents=None if raw_ref is None else [raw_ref]).items()}
    x = inp.x if "c_concat" not in conds else torch.cat([inp.x, conds["c_concat"]], dim=1)
    return model.diffusion_model(x, inp.t, inp.context_padded, audio_embed=conds.get("audio_embed"),
                                 reference_latent=conds.get("reference_latent"))


@pytest.mark.parametrize("with_ref", [True, False], ids=["reference", "no_reference"])
@pytest.mark.parametrize("variant", HUMO)
@torch.no_grad()
def test_humo_dit_matches_comfyui(variant, with_ref):
    cfg = DIT_PRESETS[variant].tiny()
    sd = random_weights(cfg, seed=3)
    ours, ref = our_model(cfg, sd), comfy_humo(cfg, sd)
    inp = make_inputs(cfg, batch=2)
    frames = inp.x.shape[2]
    audio = whisper_windows(frames)
    raw = torch.randn(1, 16, 1, *inp.x.shape[3:], generator=torch.Generator().manual_seed(4)) if with_ref else None
    normalised = None if raw is None else ref.process_latent_in(raw)
    got = ours(inp.x, inp.t, inp.context, audio_embed=audio, reference_latent=normalised)
    want = comfy_forward(ref, inp, audio, raw)
    err = check(got, want)
    print(f"{variant} {'with' if with_ref else 'without'} reference: max err {err:.2e}")
    silent = ours(inp.x, inp.t, inp.context, reference_latent=normalised)
    assert (silent - got).abs().max() > 1e-3  # the audio reaches the output
    check(silent, comfy_forward(ref, inp, torch.zeros_like(audio), raw))  # None is silence


@pytest.mark.parametrize("variant", HUMO)
def test_humo_config_read_from_shapes(variant):
    cfg = DIT_PRESETS[variant]
    with torch.device("meta"):
        sd = WanDiT(cfg).state_dict()
    assert config_from_shapes(sd).variant == variant
    assert "audio_proj.audio_proj_glob_1.layer.weight" in sd


def test_wrong_audio_length_is_named():
    cfg = DIT_PRESETS["humo_1_7b"].tiny()
    model = our_model(cfg, random_weights(cfg))
    inp = make_inputs(cfg)
    with pytest.raises(WanInputError, match="HuMo audio embedding"):
        model(inp.x, inp.t, inp.context, audio_embed=whisper_windows(inp.x.shape[2] + 1))
