"""Fun inpaint / control / camera conditioning against ComfyUI's own nodes (WanFunInpaintToVideo,
WanFunControlToVideo, Wan22FunControlToVideo, WanCameraImageToVideo, WanCameraEmbedding), in-process
on a ComfyUI VAE holding the same seeded tiny weights as ours. ``y`` is compared with what ComfyUI's
model builds from the node outputs (model_base.WAN21.concat_cond for the model's input width), after
our ``fit_to_model`` for the same model. Inputs come at other sizes, aspects and lengths than the
target, so the crop-and-resize and the cut are compared too.

Tolerance: max|ours - ComfyUI| <= 1e-5 * max|ComfyUI| (the two VAEs' own agreement); masks exact;
the camera embedding <= 1e-5 * max (ComfyUI computes the poses in numpy float64 as we do in torch).
"""

import types

import pytest
import torch
from refs import comfy, comfy_extras
from vae_fixtures import rel_err, vae21_with_comfy

from wan.errors import WanInputError
from wan.job.camera_poses import MOTIONS, camera_embedding, camera_motion
from wan.job.conditioning_fun import (
    fit_to_model,
    fun_camera_conditioning,
    fun_control_conditioning,
    fun_inpaint_conditioning,
)
from wan.models.dit.config import DIT_PRESETS

TOL = 1e-5
W, H, FRAMES = 32, 48, 9


@pytest.fixture(scope="module")
def nodes_wan():
    return comfy_extras("nodes_wan")


@pytest.fixture(scope="module")
def vae21():
    return vae21_with_comfy(seed=41)


def _cond():
    return [[torch.zeros(1, 1, 8), {}]]


def _comfy_y(cond: dict, noise_shape, in_dim: int, image_to_video: bool):
    model_base = comfy("comfy.model_base")
    fmt = comfy("comfy.latent_formats").Wan21()
    fake = types.SimpleNamespace(
        diffusion_model=types.SimpleNamespace(patch_embedding=types.SimpleNamespace(
            weight=torch.empty(8, in_dim, 1, 2, 2))),
        latent_format=fmt, process_latent_in=fmt.process_in, image_to_video=image_to_video)
    kw = {k: cond[k] for k in ("concat_latent_image", "concat_mask", "concat_mask_index") if k in cond}
    return model_base.WAN21.concat_cond(fake, noise=torch.zeros(noise_shape), device="cpu", **kw)


class FakeClip:
    def encode(self, images):
        return images.mean() * torch.arange(257 * 1280, dtype=torch.float32).view(1, 257, 1280) / 1e5


def _clip_output(images):
    out = comfy("comfy.clip_vision").Output()
    out.penultimate_hidden_states = FakeClip().encode(images[:1])
    return out


def _compare(ours_y, ref_y, mask_channels=()):
    assert ours_y.shape == ref_y.shape, (ours_y.shape, ref_y.shape)
    for c in mask_channels:
        assert torch.equal(ours_y[:, c], ref_y[:, c]), f"mask channel {c}"
    err = rel_err(ours_y, ref_y)
    assert err <= TOL, err
    return err


def test_inpaint_matches_wan_fun_inpaint(nodes_wan, vae21):
    ours_vae, ref_vae = vae21
    first, last = torch.rand(2, 40, 64, 3), torch.rand(1, 64, 40, 3)
    pos, _, latent = nodes_wan.WanFunInpaintToVideo.execute(
        _cond(), _cond(), ref_vae, W, H, FRAMES, 1, start_image=first, end_image=last,
        clip_vision_output=_clip_output(first))
    ours = fun_inpaint_conditioning(ours_vae, FakeClip(), W, H, FRAMES, start_image=first, end_image=last)
    assert ours.latent_shape() == tuple(latent["samples"].shape)
    cfg = DIT_PRESETS["fun_inpaint_1_3b"]
    ref_y = _comfy_y(pos[0][1], latent["samples"].shape, cfg.in_dim, True)
    ours_y = fit_to_model(ours, cfg).y
    print(f"Fun inpaint y rel err {_compare(ours_y, ref_y, range(4)):.2e}")
    # 2 start frames mark 5 pixel slots (the first counted 4 times), the end frame the last one
    assert ours_y[0, :4, :, 0, 0].T.flatten().tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1]
    assert torch.equal(ours.clip_fea, pos[0][1]["clip_vision_output"].penultimate_hidden_states)


@pytest.mark.parametrize("with_start", [False, True])
def test_control_21_matches_wan_fun_control(nodes_wan, vae21, with_start):
    ours_vae, ref_vae = vae21
    control = torch.rand(5, 40, 64, 3)  # shorter than the video, another size and aspect
    start = torch.rand(1, 64, 40, 3) if with_start else None
    pos, _, latent = nodes_wan.WanFunControlToVideo.execute(
        _cond(), _cond(), ref_vae, W, H, FRAMES, 1, start_image=start, control_video=control)
    ours = fun_control_conditioning(ours_vae, None, W, H, FRAMES, control_video=control, start_image=start)
    cfg = DIT_PRESETS["fun_control_1_3b"]
    ref_y = _comfy_y(pos[0][1], latent["samples"].shape, cfg.in_dim, False)
    print(f"Fun control 2.1 y rel err {_compare(fit_to_model(ours, cfg).y, ref_y):.2e}")
    assert ours.y[:, :16, 2:].abs().max() == 0  # after the 5 control frames (2 latent frames): empty


def test_control_22_matches_wan22_fun_control(nodes_wan, vae21):
    ours_vae, ref_vae = vae21
    control, start, ref = torch.rand(13, 48, 32, 3), torch.rand(2, 40, 64, 3), torch.rand(1, 64, 64, 3)
    pos, _, latent = nodes_wan.Wan22FunControlToVideo.execute(
        _cond(), _cond(), ref_vae, W, H, FRAMES, 1, ref_image=ref, start_image=start, control_video=control)
    ours = fun_control_conditioning(ours_vae, None, W, H, FRAMES, control_video=control, start_image=start,
                                    reference_image=ref)
    cfg = DIT_PRESETS["wan22_fun_control_a14b"]
    ref_y = _comfy_y(pos[0][1], latent["samples"].shape, cfg.in_dim, False)
    print(f"Fun control 2.2 y rel err {_compare(fit_to_model(ours, cfg).y, ref_y, range(16, 20)):.2e}")
    fmt = comfy("comfy.latent_formats").Wan21()
    ref_latent = fmt.process_in(pos[0][1]["reference_latents"][-1])[:, :, 0]
    err = rel_err(ours.reference, ref_latent)
    print(f"Fun control 2.2 reference rel err {err:.2e}")
    assert ours.reference.shape == ref_latent.shape and err <= TOL


@pytest.mark.parametrize("motion", ["Pan Left", "Zoom In", "ClockWise (CW)"])
@pytest.mark.parametrize("size", [(W, H), (64, 32)])
def test_camera_embedding_matches_wan_camera_embedding(motion, size):
    node = comfy_extras("nodes_camera_trajectory").WanCameraEmbedding
    w, h = size
    ref = node.execute(motion, w, h, FRAMES, speed=1.3, fx=0.4, fy=0.6, cx=0.5, cy=0.45)[0]
    ours = camera_embedding(camera_motion(motion, FRAMES, 1.3), w, h, (0.4, 0.6, 0.5, 0.45))
    assert ours.shape == ref.shape == (1, 24, 3, h, w)
    err = (ours - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item(), err


@pytest.mark.parametrize("variant,in_dim", [("camera_1_3b", 32), ("wan22_camera_a14b", 36)])
def test_camera_matches_wan_camera_image_to_video(nodes_wan, vae21, variant, in_dim):
    ours_vae, ref_vae = vae21
    start = torch.rand(1, 40, 64, 3)
    camera = camera_embedding(camera_motion("Pan Up", FRAMES), W, H)
    pos, _, latent = nodes_wan.WanCameraImageToVideo.execute(
        _cond(), _cond(), ref_vae, W, H, FRAMES, 1, start_image=start, camera_conditions=camera,
        clip_vision_output=_clip_output(start))
    ours = fun_camera_conditioning(ours_vae, FakeClip(), W, H, FRAMES, camera=camera, start_image=start)
    cfg = DIT_PRESETS[variant]
    ref_y = _comfy_y(pos[0][1], latent["samples"].shape, in_dim, False)
    print(f"{variant} y rel err {_compare(fit_to_model(ours, cfg).y, ref_y):.2e}")
    assert torch.equal(ours.camera, pos[0][1]["camera_conditions"])
    assert torch.equal(ours.clip_fea, pos[0][1]["clip_vision_output"].penultimate_hidden_states)


def test_bad_fun_inputs_are_refused_before_sampling(vae21):
    ours_vae, _ = vae21
    camera = camera_embedding(camera_motion("Static", 13), W, H)  # 13 poses for a 9-frame video
    with pytest.raises(WanInputError, match="camera poses for 13 frames but the video has 9"):
        fun_camera_conditioning(ours_vae, None, W, H, FRAMES, camera=camera)
    with pytest.raises(WanInputError, match="camera embedding of 64x48"):
        wide = camera_embedding(camera_motion("Static", 9), 64, 48)
        fun_camera_conditioning(ours_vae, None, W, H, FRAMES, camera=wide)
    with pytest.raises(WanInputError, match="1 \\+ 4k"):
        camera_embedding(camera_motion("Static", 8), W, H)
    with pytest.raises(WanInputError, match="not one of"):
        camera_motion("Dolly", 9)
    cond = fun_control_conditioning(ours_vae, None, W, H, FRAMES, control_video=torch.rand(9, H, W, 3))
    with pytest.raises(WanInputError, match=r"i2v_14b \(task i2v\) takes 20 conditioning channels, the image_em"):
        fit_to_model(cond, DIT_PRESETS["i2v_14b"])
    with pytest.raises(WanInputError, match="no camera adapter"):
        fit_to_model(cond.replace(camera=camera), DIT_PRESETS["fun_control_1_3b"])
    assert set(MOTIONS) == set(comfy_extras("nodes_camera_trajectory").CAMERA_DICT) - {"base_T_norm", "base_angle"}
