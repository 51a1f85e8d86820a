"""Wan 2.2 Animate: our WanDiT against ComfyUI's AnimateWanModel on the same seeded weights, fp32 CPU
(tolerance of the DiT parity tests: max|ours - ref| <= 1e-5 * max|ref| + 1e-6), and its detection.

Face frames are 512x512 whatever the model size (the motion encoder's fixed input), so the tests
keep the face videos short.
"""

import pytest
import torch

from dit_fixtures import check, comfy_animate_model, make_inputs, random_weights
from wan.errors import WanFileError
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.models.dit.shapes import config_from_shapes
from wan.models.identify import identify

torch.set_num_threads(2)

CFG = DIT_PRESETS["wan22_animate_14b"].tiny()


@pytest.fixture(scope="module")
def models():
    sd = random_weights(CFG)
    ours = WanDiT(CFG)
    ours.load_state_dict(sd, strict=True)
    return sd, ours.eval(), comfy_animate_model(CFG, sd)


def animate_inputs(batch=1, frames=3, face_frames=5, seed=3):
    inp = make_inputs(CFG, batch=batch, frames=frames, height=4, width=6)
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(batch, 16, frames - 1, 4, 6, generator=g)
    face = torch.rand(batch, 3, face_frames, 512, 512, generator=g) * 2 - 1
    return inp, pose, face


def comfy_out(model, inp, pose, face):
    x = torch.cat([inp.x, inp.y], dim=1)
    return model(x, inp.t, inp.context_padded, clip_fea=inp.clip_fea, pose_latents=pose, face_pixel_values=face)


def ours_out(model, inp, pose, face):
    return model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y, pose_latents=pose, face_pixels=face)


def test_tiny_config_keeps_the_structure():
    assert CFG.num_layers == 5 and CFG.face_blocks == 1 and CFG.head_dim == 128
    assert DIT_PRESETS["wan22_animate_14b"].face_blocks == 8


@torch.no_grad()
@pytest.mark.parametrize("face_frames", [5, 9])  # exactly, fewer (zero-padded), more (cut) frames
def test_matches_comfyui(models, face_frames):
    _, ours, ref = models
    inp, pose, face = animate_inputs(face_frames=face_frames)
    out = ours_out(ours, inp, pose, face)
    theirs = comfy_out(ref, inp, pose, face)
    err = check(out, theirs)
    print(f"Animate DiT vs ComfyUI ({face_frames} face frames): max abs {err:.2e}, max|ref| {theirs.abs().max():.2e}")
    # the face and pose paths change the output (a test that could not fail otherwise)
    assert (out - ours_out(ours, inp, None, None)).abs().max() > 1e-3


@torch.no_grad()
def test_batch_of_two_and_no_face(models):
    """A CFG batch (two faces), and a run with pose only, as ComfyUI runs them."""
    _, ours, ref = models
    inp, pose, face = animate_inputs(batch=2, face_frames=5)
    face = torch.cat([face[:1], torch.full_like(face[:1], -1.0)])  # the negative's blank face
    check(ours_out(ours, inp, pose, face), comfy_out(ref, inp, pose, face))
    check(ours_out(ours, inp, pose, None), comfy_out(ref, inp, pose, None))


@torch.no_grad()
def test_face_memo_gives_the_same_output(models):
    _, ours, _ = models
    inp, pose, face = animate_inputs()
    plain = ours_out(ours, inp, pose, face)
    with ours.face_memo():
        first = ours_out(ours, inp, pose, face)
        again = ours_out(ours, inp, pose, face)
        assert len(ours._face_memo) == 1
    check(first, plain, rtol=0, atol=0)
    check(again, plain, rtol=0, atol=0)
    assert ours._face_memo is None


def test_detection_names_the_variant(models):
    sd, _, _ = models
    full = {k: tuple(v.shape) for k, v in sd.items()}
    assert config_from_shapes(full).model_type == "animate"
    who = identify(full)
    assert who.role == "dit" and "animate" in who.detail
    # the published 14B shapes name the preset
    with torch.device("meta"):
        big = {k: tuple(v.shape) for k, v in WanDiT(DIT_PRESETS["wan22_animate_14b"]).state_dict().items()}
    assert identify(big).variant == "wan22_animate_14b"
    # a face adapter block count that does not fit the depth is refused, naming the file
    bad = {k: v for k, v in full.items()}
    bad.update({k.replace("fuser_blocks.0.", "fuser_blocks.1."): v for k, v in full.items() if "fuser_blocks.0." in k})
    with pytest.raises(WanFileError, match="face adapter"):
        config_from_shapes(bad, "animate.safetensors")
