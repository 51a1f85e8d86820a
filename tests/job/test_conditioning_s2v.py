"""Wan S2V conditioning against ComfyUI's WanSoundImageToVideo and WanSoundImageToVideoExtend
(comfy_extras/nodes_wan.py), run in-process on comfy.sd.VAE holding the same seeded tiny weights
as our VAE; AUDIO_ENCODER_OUTPUT built from random tensors with wav2vec2 large's shapes (25 hidden
states of 1024 channels at 50 frames per second). The latents are compared as ComfyUI's
WAN22_S2V.extra_conds hands them to the model (process_latent_in).

Tolerance: max|ours - ComfyUI| <= 1e-5 * max|ComfyUI| (the two VAEs' own agreement); the audio
embedding, which involves no VAE, within 1e-6.
"""

import pytest
import torch
from refs import comfy_extras
from vae_fixtures import rel_err, vae21_with_comfy

from wan.errors import WanInputError
from wan.job.conditioning import normalize_latent
from wan.job.conditioning_s2v import audio_clips, sound_conditioning, sound_extend

TOL = 1e-5
W, H, FRAMES = 32, 48, 9


@pytest.fixture(scope="module")
def vae21():
    return vae21_with_comfy(seed=43)


def encoder_output(frames, seed=7):
    g = torch.Generator().manual_seed(seed)
    layers = tuple(torch.randn(1, frames, 1024, generator=g) for _ in range(25))
    return {"encoded_audio": layers[-1], "encoded_audio_all_layers": layers, "audio_samples": frames * 320}


def _cond():
    return [[torch.zeros(1, 1, 8), {}]]


def _compare(cond, ref, label):
    pos, neg, latent = ref
    pos, neg = pos[0][1], neg[0][1]
    s = cond.sound
    assert cond.latent_shape() == tuple(latent["samples"].shape)
    if "audio_embed" in pos:
        assert s.audio_embed.shape == pos["audio_embed"].shape
        assert rel_err(s.audio_embed, pos["audio_embed"]) <= 1e-6
        assert bool((neg["audio_embed"] == 0).all()) and bool((s.silent().audio_embed == 0).all())
    else:
        assert s.audio_embed is None
    errs = {}
    pairs = (("reference", pos.get("reference_latents", [None])[-1]), ("motion", pos.get("reference_motion")),
             ("control", pos.get("control_video")))
    for name, theirs in pairs:
        mine = getattr(s, name)
        if theirs is None:
            assert mine is None, name
            continue
        theirs = normalize_latent(theirs.float())  # WAN22_S2V.extra_conds: process_latent_in
        assert mine.shape == theirs.shape, (name, mine.shape, theirs.shape)
        scale = theirs.abs().max().item()
        errs[name] = (mine - theirs).abs().max().item() / scale if scale else (mine - theirs).abs().max().item()
        assert errs[name] <= TOL, (name, errs[name])
    print(f"S2V {label}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))


@pytest.mark.parametrize("audio_frames", [50, 10])  # two clips of speech; speech shorter than the video
def test_sound_image_to_video(vae21, audio_frames):
    ours_vae, ref_vae = vae21
    g = torch.Generator().manual_seed(5)
    ref_img = torch.rand(2, 40, 64, 3, generator=g)  # another aspect; the first image is used
    control = torch.rand(12, 56, 40, 3, generator=g)  # longer than the video
    motion = torch.rand(6, 48, 32, 3, generator=g)  # fewer than 73 frames: grey in front
    audio = encoder_output(audio_frames)
    node = comfy_extras("nodes_wan").WanSoundImageToVideo
    ref = node.execute(_cond(), _cond(), ref_vae, W, H, FRAMES, 1, ref_image=ref_img, audio_encoder_output=audio,
                       control_video=control, ref_motion=motion)
    cond, offset = sound_conditioning(ours_vae, W, H, FRAMES, audio, ref_img, control, motion)
    _compare(cond, ref, f"{audio_frames} audio frames")
    assert offset == 12


def test_without_optional_inputs(vae21):
    ours_vae, ref_vae = vae21
    ref = comfy_extras("nodes_wan").WanSoundImageToVideo.execute(_cond(), _cond(), ref_vae, W, H, FRAMES, 1)
    cond, offset = sound_conditioning(ours_vae, W, H, FRAMES)
    _compare(cond, ref, "no inputs")
    assert offset == 0 and bool((cond.sound.control == 0).all())


@pytest.mark.parametrize("audio_frames", [120, 20])  # the next clip has speech; the speech has ended
def test_extend(vae21, audio_frames):
    ours_vae, ref_vae = vae21
    g = torch.Generator().manual_seed(9)
    video = torch.randn(1, 16, 3, H // 8, W // 8, generator=g)  # the previous clip's raw latent
    ref_img = torch.rand(1, 48, 32, 3, generator=g)
    audio = encoder_output(audio_frames)
    node = comfy_extras("nodes_wan").WanSoundImageToVideoExtend
    ref = node.execute(_cond(), _cond(), ref_vae, FRAMES, {"samples": video}, ref_image=ref_img,
                       audio_encoder_output=audio)
    cond, offset = sound_extend(ours_vae, FRAMES, video, audio, ref_img)
    _compare(cond, ref, f"extend, {audio_frames} audio frames")
    assert offset == (24 if audio_frames == 120 else 12)


def test_clip_count_and_bad_inputs(vae21):
    ours_vae, _ = vae21
    assert audio_clips(encoder_output(50), FRAMES) == 2  # 1 s of speech, clips of 0.75 s
    assert audio_clips(encoder_output(10), FRAMES) == 1
    with pytest.raises(WanInputError, match="AUDIO_ENCODER_OUTPUT"):
        sound_conditioning(ours_vae, W, H, FRAMES, audio_encoder_output=torch.zeros(1, 10, 1024))
    with pytest.raises(WanInputError, match="video_latent"):
        sound_extend(ours_vae, FRAMES, torch.zeros(1, 16, 3, 7))
