"""I2V / FLF2V / VACE / TI2V conditioning against ComfyUI's own Wan nodes (comfy_extras/nodes_wan.py).

The nodes run in-process on a ComfyUI VAE holding the same seeded tiny weights as ours (Wan 2.1:
comfy.sd.VAE itself; Wan 2.2: ComfyUI's vae2_2.WanVAE behind the same pixel convention, because
comfy.sd.VAE builds the 2.2 VAE at full width). The I2V/FLF2V ``y`` is compared with what ComfyUI's
model (model_base.WAN21.concat_cond) builds from the node outputs. Images are given at other sizes
and aspects than the target, so the crop-and-resize is compared too.

Tolerance: max|ours - ComfyUI| <= 1e-5 * max|ComfyUI| (the two VAEs' own agreement); masks exact.
"""

import types

import pytest
import torch
from refs import comfy, comfy_extras
from vae_fixtures import TINY22, random_weights, rel_err

from wan.job.conditioning import (
    denormalize_latent,
    fit_images,
    i2v_conditioning,
    t2v_conditioning,
    ti2v_conditioning,
    vace_conditioning,
)
from wan.errors import WanInputError
from wan.models.vae.wan21 import WanVAE
from wan.models.vae.wan22 import WanVAE22
from wan.models.vae.layers import VAEConfig

TOL = 1e-5
W, H, FRAMES = 32, 48, 9


@pytest.fixture(scope="module")
def nodes_wan():
    return comfy_extras("nodes_wan")


@pytest.fixture(scope="module")
def vae21():
    torch.set_num_threads(2)
    ours = WanVAE(VAEConfig(dim=8, z_dim=16, num_res_blocks=2)).eval()  # comfy.sd.VAE fixes 2 res blocks
    sd = random_weights(ours.state_dict(), seed=31)
    ours.load_state_dict(sd)
    ref = comfy("comfy.sd").VAE(sd=sd, dtype=torch.float32)
    return ours, ref


class ComfyVAE22:
    """comfy.sd.VAE's encode convention (IMAGE [F, H, W, 3] -> [1, 3, F, H, W] in -1..1) over a tiny
    ComfyUI Wan 2.2 VAE."""

    latent_channels = 48

    def __init__(self, model):
        self.model = model

    def encode(self, pixels):
        with torch.no_grad():
            return self.model.encode(pixels.movedim(-1, 0)[None] * 2.0 - 1.0).float()

    def spacial_compression_encode(self):
        return 16


@pytest.fixture(scope="module")
def vae22():
    ours = WanVAE22(TINY22).eval()
    sd = random_weights(ours.state_dict(), seed=32)
    ours.load_state_dict(sd)
    ref = comfy("comfy.ldm.wan.vae2_2").WanVAE(dim=TINY22.dim, dec_dim=TINY22.dec_dim, z_dim=48,
                                               num_res_blocks=TINY22.num_res_blocks,
                                               temperal_downsample=[False, True, True]).eval()
    ref.load_state_dict(sd, strict=True)
    return ours, ComfyVAE22(ref)


def _cond():
    return [[torch.zeros(1, 1, 8), {}]]


def _comfy_y(cond: dict, noise_shape):
    """ComfyUI's model-side `y`: WAN21.concat_cond on the node outputs (mask inverted, latent normalised)."""
    model_base = comfy("comfy.model_base")
    fmt = comfy("comfy.latent_formats").Wan21()
    fake = types.SimpleNamespace(
        diffusion_model=types.SimpleNamespace(patch_embedding=types.SimpleNamespace(weight=torch.empty(8, 36, 1, 2, 2))),
        latent_format=fmt, process_latent_in=fmt.process_in, image_to_video=True,
    )
    return model_base.WAN21.concat_cond(fake, noise=torch.zeros(noise_shape), device="cpu",
                                        concat_latent_image=cond["concat_latent_image"],
                                        concat_mask=cond["concat_mask"])


class FakeClip:
    """Stands in for CLIP (tested on its own): tokens that depend on the image it is given."""

    def encode(self, images):
        assert images.ndim == 4 and images.shape[0] == 1
        return images.mean() * torch.arange(257 * 1280, dtype=torch.float32).view(1, 257, 1280) / 1e5


def _clip_output(images):
    out = comfy("comfy.clip_vision").Output()
    out.penultimate_hidden_states = FakeClip().encode(images)
    return out


def test_fit_images_matches_common_upscale():
    utils = comfy("comfy.utils")
    for shape in [(2, 40, 64, 3), (1, 64, 40, 3), (1, 48, 32, 3)]:
        img = torch.rand(shape)
        ref = utils.common_upscale(img.movedim(-1, 1), W, H, "bilinear", "center").movedim(1, -1)
        assert torch.equal(fit_images(img, W, H), ref)


def test_i2v_matches_wan_image_to_video(nodes_wan, vae21):
    ours_vae, ref_vae = vae21
    image = torch.rand(1, 40, 64, 3)
    pos, _, latent = nodes_wan.WanImageToVideo.execute(_cond(), _cond(), ref_vae, W, H, FRAMES, 1,
                                                       start_image=image, clip_vision_output=_clip_output(image))
    ours = i2v_conditioning(ours_vae, FakeClip(), image, W, H, FRAMES)
    assert ours.latent_shape() == tuple(latent["samples"].shape)
    ref_y = _comfy_y(pos[0][1], latent["samples"].shape)
    assert ours.y.shape == ref_y.shape == (1, 20, 3, H // 8, W // 8)
    assert torch.equal(ours.y[:, :4], ref_y[:, :4])
    err = rel_err(ours.y[:, 4:], ref_y[:, 4:])
    print(f"I2V y rel err vs ComfyUI: {err:.2e}")
    assert err <= TOL
    assert torch.equal(ours.clip_fea, pos[0][1]["clip_vision_output"].penultimate_hidden_states)


def test_flf2v_matches_wan_first_last_frame(nodes_wan, vae21):
    ours_vae, ref_vae = vae21
    first, last = torch.rand(1, 48, 40, 3), torch.rand(1, 64, 64, 3)
    pos, _, latent = nodes_wan.WanFirstLastFrameToVideo.execute(
        _cond(), _cond(), ref_vae, W, H, FRAMES, 1, start_image=first, end_image=last,
        clip_vision_start_image=_clip_output(first), clip_vision_end_image=_clip_output(last))
    ours = i2v_conditioning(ours_vae, FakeClip(), first, W, H, FRAMES, end_image=last)
    ref_y = _comfy_y(pos[0][1], latent["samples"].shape)
    assert torch.equal(ours.y[:, :4], ref_y[:, :4])
    # known: all 4 slots of latent frame 0, only the last slot of the last latent frame
    assert ours.y[0, :4, :, 0, 0].tolist() == [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 1]]
    err = rel_err(ours.y[:, 4:], ref_y[:, 4:])
    print(f"FLF2V y rel err vs ComfyUI: {err:.2e}")
    assert err <= TOL
    assert ours.clip_fea.shape == (1, 514, 1280)
    assert torch.equal(ours.clip_fea, pos[0][1]["clip_vision_output"].penultimate_hidden_states)


def test_vace_matches_wan_vace_to_video(nodes_wan, vae21):
    ours_vae, ref_vae = vae21
    control = torch.rand(7, 40, 64, 3)  # shorter than FRAMES: padded with grey
    masks = (torch.rand(7, 40, 64) > 0.5).float()  # padded with ones
    ref_image = torch.rand(1, 64, 48, 3)
    pos, _, latent, trim = nodes_wan.WanVaceToVideo.execute(
        _cond(), _cond(), ref_vae, W, H, FRAMES, 1, 0.7, control_video=control, control_masks=masks,
        reference_image=ref_image)
    c = pos[0][1]
    ours = vace_conditioning(ours_vae, W, H, FRAMES, 0.7, reference_image=ref_image, control_video=control,
                             mask=masks)
    assert ours.trim_latent == trim == 1
    assert ours.latent_shape() == tuple(latent["samples"].shape)
    assert ours.vace_strength == tuple(c["vace_strength"]) == (0.7,)
    # ComfyUI's model (WAN21_Vace.extra_conds) normalises each 16-channel half and appends the mask
    fmt = comfy("comfy.latent_formats").Wan21()
    frames = c["vace_frames"][0]
    ref_ctx = torch.cat([fmt.process_in(frames[:, :16]), fmt.process_in(frames[:, 16:]), c["vace_mask"][0]], dim=1)
    ctx = ours.vace_context[:, 0]
    assert ctx.shape == ref_ctx.shape == (1, 96, 4, H // 8, W // 8)
    assert torch.equal(ctx[:, 32:], ref_ctx[:, 32:])
    err = rel_err(ctx[:, :32], ref_ctx[:, :32])
    print(f"VACE context rel err vs ComfyUI: {err:.2e}")
    assert err <= TOL
    assert (ctx[:, 16:32, 0] == 0).all() and (ctx[:, 32:, 0] == 0).all()  # reference frame: no reactive part


def test_ti2v_matches_wan22_image_to_video_latent(nodes_wan, vae22):
    ours_vae, ref_vae = vae22
    image = torch.rand(1, 40, 64, 3)
    (out,) = nodes_wan.Wan22ImageToVideoLatent.execute(ref_vae, 64, 32, FRAMES, 1, start_image=image)
    ours = ti2v_conditioning(ours_vae, 64, 32, FRAMES, image=image)
    assert ours.latent_shape() == tuple(out["samples"].shape) == (1, 48, 3, 2, 4)
    assert torch.equal(ours.denoise_mask, out["noise_mask"])
    err = rel_err(denormalize_latent(ours.fixed_latent), out["samples"])
    print(f"TI2V latent rel err vs ComfyUI: {err:.2e}")
    assert err <= TOL
    assert ti2v_conditioning(ours_vae, 64, 32, FRAMES).fixed_latent is None


def test_sizes_rounded_or_refused(vae21):
    with pytest.warns(UserWarning, match="not a multiple of 16; using 32x48"):
        c = t2v_conditioning(40, 50, 9)
    assert (c.width, c.height) == (32, 48)
    with pytest.warns(UserWarning, match="1 \\+ 4k; using 9 instead of 10"):
        assert t2v_conditioning(32, 32, 10).num_frames == 9
    with pytest.warns(UserWarning, match="multiple of 32"):
        assert t2v_conditioning(48, 64, 1, latent_channels=48).width == 32
    with pytest.raises(WanInputError, match="width must be at least 16"):
        t2v_conditioning(8, 32, 5)
    with pytest.raises(WanInputError, match="num_frames must be 1 \\+ 4k"):
        t2v_conditioning(32, 32, 0)
    with pytest.raises(WanInputError, match="height must be an integer"):
        t2v_conditioning(32, 32.0, 5)
    ours_vae, _ = vae21
    with pytest.raises(WanInputError, match="needs a start image"):
        i2v_conditioning(ours_vae, None, None, 32, 32, 5)
    with pytest.raises(WanInputError, match="channels last"):
        i2v_conditioning(ours_vae, None, torch.rand(1, 3, 32, 32), 32, 32, 5)
    with pytest.raises(WanInputError, match="Wan2.2 \\(48 latent channels\\) VAE"):
        ti2v_conditioning(ours_vae, 32, 32, 5)
