"""Wan 2.2 S2V: our WanDiT against ComfyUI's WanModel_S2V on the same seeded weights, fp32 CPU
(tolerance of the DiT parity tests), with and without the reference, motion, control and audio
inputs, and its detection from the weights."""

import pytest
import torch

from dit_fixtures import check, make_inputs, random_weights
from refs import comfy
from wan.errors import WanInputError
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.models.dit.s2v import SoundInputs
from wan.models.dit.shapes import config_from_shapes
from wan.models.identify import identify

torch.set_num_threads(2)

CFG = DIT_PRESETS["wan22_s2v_14b"].tiny()


def comfy_s2v_model(cfg, sd):
    ldm = comfy("comfy.ldm.wan.model")
    ops = comfy("comfy.ops").disable_weight_init
    model = ldm.WanModel_S2V(
        patch_size=cfg.patch_size, text_len=cfg.text_len, in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim,
        freq_dim=cfg.freq_dim, text_dim=cfg.text_dim, out_dim=cfg.out_dim, num_heads=cfg.num_heads,
        num_layers=cfg.num_layers, eps=cfg.eps, device="cpu", dtype=torch.float32, operations=ops)
    model.load_state_dict(sd, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def models():
    sd = random_weights(CFG)
    ours = WanDiT(CFG)
    ours.load_state_dict(sd, strict=True)
    return sd, ours.eval(), comfy_s2v_model(CFG, sd)


def sound_inputs(frames=3, h=8, w=12, motion_frames=19, seed=5, audio=True, ref=True, motion=True, control=True):
    g = torch.Generator().manual_seed(seed)
    return SoundInputs(
        audio_embed=torch.randn(1, 25, 1024, frames * 4, generator=g) if audio else None,
        reference=torch.randn(1, 16, 1, h, w, generator=g) if ref else None,
        motion=torch.randn(1, 16, motion_frames, h, w, generator=g) if motion else None,
        control=torch.randn(1, 16, frames, h, w, generator=g) if control else None,
    )


def run_both(ours, comfy_model, batch=1, frames=3, h=8, w=12, **kw):
    inp = make_inputs(CFG, batch=batch, frames=frames, height=h, width=w)
    s = sound_inputs(frames, h, w, **kw)
    out = ours(inp.x, inp.t, inp.context, sound=s)
    b = {k: None if v is None else v.expand(batch, *v.shape[1:]) for k, v in s.__dict__.items()}  # ComfyUI batches conds
    theirs = comfy_model(inp.x, inp.t, inp.context_padded, audio_embed=b["audio_embed"],
                         reference_latent=b["reference"], reference_motion=b["motion"], control_video=b["control"])
    return out, theirs, inp


def test_tiny_config_keeps_the_structure():
    assert CFG.is_s2v and CFG.num_layers == 5 and CFG.head_dim == 128 and CFG.audio_layers == 25
    assert len(CFG.audio_inject_layers) == 12


@torch.no_grad()
@pytest.mark.parametrize("parts", [
    dict(),  # audio, reference, motion and control
    dict(motion=False),
    dict(ref=False),
    dict(audio=False, control=False),
    dict(audio=False, ref=False, motion=False, control=False),
    dict(motion_frames=7),  # fewer motion frames than the 19 packed: zero-padded in front
])
def test_matches_comfyui(models, parts):
    _, ours, ref = models
    out, theirs, _ = run_both(ours, ref, **parts)
    err = check(out, theirs)
    print(f"S2V DiT vs ComfyUI {parts}: max abs {err:.2e}, max|ref| {theirs.abs().max():.2e}")


@torch.no_grad()
def test_odd_sizes_and_batch_of_two(models):
    """A CFG batch (the negative's silent audio is the same shape) at a grid that is not a multiple
    of the motion packer's 4x / 8x patches, and a longer clip."""
    _, ours, ref = models
    check(*run_both(ours, ref, batch=2, frames=5, h=10, w=14)[:2])
    check(*run_both(ours, ref, frames=6, h=16, w=16)[:2])


@torch.no_grad()
def test_each_input_changes_the_output(models):
    _, ours, _ = models
    inp = make_inputs(CFG, frames=3, height=8, width=12)
    full = sound_inputs()
    base = ours(inp.x, inp.t, inp.context, sound=full)
    for field in ("audio_embed", "reference", "motion", "control"):
        other = SoundInputs(**{**full.__dict__, field: None})
        assert (ours(inp.x, inp.t, inp.context, sound=other) - base).abs().max() > 1e-4, field
    assert (ours(inp.x, inp.t, inp.context, sound=full.silent()) - base).abs().max() > 1e-4


@torch.no_grad()
def test_bad_inputs_are_named(models):
    _, ours, _ = models
    inp = make_inputs(CFG, frames=3, height=8, width=12)
    short = sound_inputs(frames=2)  # audio for 2 latent frames, the video has 3
    with pytest.raises(WanInputError, match="audio"):
        ours(inp.x, inp.t, inp.context, sound=SoundInputs(audio_embed=short.audio_embed))
    with pytest.raises(WanInputError, match="control"):
        ours(inp.x, inp.t, inp.context, sound=SoundInputs(control=torch.zeros(1, 16, 2, 8, 12)))
    plain = WanDiT(DIT_PRESETS["t2v_1_3b"].tiny()).eval()
    with pytest.raises(WanInputError, match="S2V"):
        plain(inp.x, inp.t, inp.context, sound=sound_inputs())


def test_detection_names_s2v(models):
    sd, _, _ = models
    assert config_from_shapes(sd) == CFG.__class__(**{**CFG.__dict__, "variant": "custom_s2v"})
    with torch.device("meta"):
        full = WanDiT(DIT_PRESETS["wan22_s2v_14b"]).state_dict()
    assert config_from_shapes(full).variant == "wan22_s2v_14b"
    assert identify(full).variant == "wan22_s2v_14b"
