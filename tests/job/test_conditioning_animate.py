"""Wan Animate conditioning against ComfyUI's WanAnimateToVideo (comfy_extras/nodes_wan.py), run
in-process on comfy.sd.VAE holding the same seeded tiny weights as our VAE. ``y`` is compared with
what ComfyUI's model builds from the node's outputs (model_base.WAN21.concat_cond), the pose latent
with its WAN22_Animate.extra_conds (process_latent_in), the face pixels as the node leaves them.
Inputs come at other sizes and aspects than the target, so the crop-and-resize is compared too.

Tolerance: max|ours - ComfyUI| <= 1e-5 * max|ComfyUI| (the two VAEs' own agreement); masks and face
pixels exact.
"""

import warnings

import pytest
import torch
from refs import comfy_extras
from vae_fixtures import rel_err, vae21_with_comfy

from test_pipeline_conditioning import _clip_output, _comfy_y, _cond

from wan.errors import WanInputError
from wan.job.conditioning import normalize_latent
from wan.job.conditioning_animate import animate_conditioning

TOL = 1e-5
W, H, FRAMES = 32, 48, 9


@pytest.fixture(scope="module")
def vae21():
    return vae21_with_comfy(seed=41)


def _comfy(vae, **kw):
    node = comfy_extras("nodes_wan").WanAnimateToVideo
    args = dict(width=W, height=H, length=FRAMES, batch_size=1, continue_motion_max_frames=5, video_frame_offset=0)
    args.update(kw)
    pos, neg, latent, trim_latent, trim_image, offset = node.execute(_cond(), _cond(), vae, **args)
    return pos[0][1], neg[0][1], latent["samples"], trim_latent, trim_image, offset


def _compare(ours, window, ref, label):
    pos, neg, latent, trim_latent, trim_image, offset = ref
    assert ours.latent_shape() == tuple(latent.shape)
    assert ours.trim_latent == trim_latent and window.trim_image == trim_image
    assert window.video_frame_offset == offset
    ref_y = _comfy_y(pos, latent.shape)
    assert ours.y.shape == ref_y.shape
    assert torch.equal(ours.y[:, :4], ref_y[:, :4])
    err = rel_err(ours.y[:, 4:], ref_y[:, 4:])
    print(f"Animate {label}: y rel err vs ComfyUI {err:.2e}", end="")
    assert err <= TOL
    if "pose_video_latent" in pos:
        ref_pose = normalize_latent(pos["pose_video_latent"].float())  # WAN22_Animate: process_latent_in
        perr = rel_err(ours.pose_latents, ref_pose)
        print(f", pose latent {perr:.2e}", end="")
        assert perr <= TOL
    else:
        assert ours.pose_latents is None
    if "face_video_pixels" in pos:
        assert torch.equal(ours.face_pixels, pos["face_video_pixels"].float())
        assert bool((neg["face_video_pixels"] == -1).all())  # what sample_video gives the negative
    else:
        assert ours.face_pixels is None
    print()


def test_reference_pose_face_clip(vae21):
    ours_vae, ref_vae = vae21
    g = torch.Generator().manual_seed(5)
    ref_img = torch.rand(1, 40, 64, 3, generator=g)
    pose = torch.rand(12, 56, 40, 3, generator=g)  # longer than asked, another aspect
    face = torch.rand(7, 96, 80, 3, generator=g)  # shorter than asked
    ref = _comfy(ref_vae, reference_image=ref_img, pose_video=pose, face_video=face,
                 clip_vision_output=_clip_output(ref_img))
    cond, window = animate_conditioning(ours_vae, W, H, FRAMES, ref_img, pose, face,
                                        clip_fea=ref[0]["clip_vision_output"].penultimate_hidden_states)
    _compare(cond, window, ref, "reference + pose + face")
    assert torch.equal(cond.clip_fea, ref[0]["clip_vision_output"].penultimate_hidden_states)


def test_short_pose_video_is_padded_and_no_reference(vae21):
    ours_vae, ref_vae = vae21
    pose = torch.rand(3, H, W, 3, generator=torch.Generator().manual_seed(6))
    ref = _comfy(ref_vae, pose_video=pose)
    with pytest.warns(Warning, match="pose_video has 3 frames"):
        cond, window = animate_conditioning(ours_vae, W, H, FRAMES, pose_video=pose)
    _compare(cond, window, ref, "short pose, no reference")


@pytest.mark.parametrize("offset, kept", [(9, 5), (2, 3), (20, 4)])
def test_windowed_continuation(vae21, offset, kept):
    """The next window: the previous window's last frames kept in front, the driving videos read
    from ``video_frame_offset`` (less the kept frames); past their end they are left out."""
    ours_vae, ref_vae = vae21
    g = torch.Generator().manual_seed(7)
    pose = torch.rand(24, 56, 40, 3, generator=g)
    face = torch.rand(24, 64, 64, 3, generator=g)
    previous = torch.rand(9, 40, 64, 3, generator=g)
    ref_img = torch.rand(1, H, W, 3, generator=g)
    kw = dict(continue_motion_max_frames=kept, video_frame_offset=offset)
    ref = _comfy(ref_vae, reference_image=ref_img, pose_video=pose, face_video=face, continue_motion=previous, **kw)
    cond, window = animate_conditioning(ours_vae, W, H, FRAMES, ref_img, pose, face, continue_motion=previous, **kw)
    _compare(cond, window, ref, f"continuation offset {offset} keep {kept}")


@pytest.mark.parametrize("offset, kept, mask_frames", [(0, None, 14), (0, None, 1), (6, 3, 11), (9, 5, 12)])
def test_replace_mode(vae21, offset, kept, mask_frames):
    """Replace mode: the character put into a background video where a soft character mask says;
    videos and mask at other sizes and aspects, read from the offset (one mask frame stands for
    all), the kept frames of a continued window left as they are."""
    ours_vae, ref_vae = vae21
    g = torch.Generator().manual_seed(8 + offset)
    background = torch.rand(14, 40, 64, 3, generator=g)
    mask = torch.rand(mask_frames, 72, 40, generator=g)
    mask[:, 20:50] = (mask[:, 20:50] > 0.5).float()  # hard and soft regions both
    pose = torch.rand(14, 56, 40, 3, generator=g)
    ref_img = torch.rand(1, H, W, 3, generator=g)
    kw = dict(video_frame_offset=offset)
    if kept:
        kw.update(continue_motion=torch.rand(9, H, W, 3, generator=g), continue_motion_max_frames=kept)
    ref = _comfy(ref_vae, reference_image=ref_img, pose_video=pose, background_video=background,
                 character_mask=mask, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a mask shorter than the window is said, and compared here
        cond, window = animate_conditioning(ours_vae, W, H, FRAMES, ref_img, pose, background_video=background,
                                            character_mask=mask, **kw)
    assert not torch.equal(cond.y[:, :4, 1:], torch.zeros_like(cond.y[:, :4, 1:]))  # the mask reached y
    _compare(cond, window, ref, f"replace offset {offset} keep {kept} mask frames {mask_frames}")


def test_replace_inputs_past_their_end(vae21):
    """A background and mask that end before the offset are left out (the window is generated
    whole over grey), as ComfyUI leaves them out; a mask shorter than the window is said."""
    ours_vae, ref_vae = vae21
    g = torch.Generator().manual_seed(9)
    background, mask = torch.rand(4, H, W, 3, generator=g), torch.rand(4, H, W, generator=g)
    ref = _comfy(ref_vae, background_video=background, character_mask=mask, video_frame_offset=4)
    cond, window = animate_conditioning(ours_vae, W, H, FRAMES, background_video=background,
                                        character_mask=mask, video_frame_offset=4)
    _compare(cond, window, ref, "background and mask past their end")
    with pytest.warns(Warning, match="character_mask has 2 frames"):
        animate_conditioning(ours_vae, W, H, FRAMES, character_mask=mask, video_frame_offset=2)


def test_bad_replace_inputs_are_refused(vae21):
    ours_vae, _ = vae21
    with pytest.raises(WanInputError, match="character_mask must be \\[frames, H, W\\]"):
        animate_conditioning(ours_vae, W, H, FRAMES, character_mask=torch.rand(2, 3, H, W))
    with pytest.raises(WanInputError, match="character_mask must be a mask tensor"):
        animate_conditioning(ours_vae, W, H, FRAMES, character_mask=[[0.5]])
    with pytest.raises(WanInputError, match="background_video"):
        animate_conditioning(ours_vae, W, H, FRAMES, background_video=torch.rand(4, H, W))
    bad = torch.rand(3, H, W)
    bad[1, 2, 3] = float("nan")
    with pytest.raises(WanInputError, match="character_mask"):
        animate_conditioning(ours_vae, W, H, FRAMES, character_mask=bad)


def test_bad_inputs_are_refused_before_encoding(vae21):
    ours_vae, _ = vae21
    with pytest.raises(WanInputError, match="pose_video"):
        animate_conditioning(ours_vae, W, H, FRAMES, pose_video=torch.rand(4, H, W))
    with pytest.raises(WanInputError, match="video_frame_offset"):
        animate_conditioning(ours_vae, W, H, FRAMES, video_frame_offset=-1)
    with pytest.raises(WanInputError, match="clip_embeds"):
        animate_conditioning(ours_vae, W, H, FRAMES, clip_fea=torch.zeros(1, 257, 1024))
