"""HuMo conditioning against ComfyUI's own WanHuMoImageToVideo, in-process on a ComfyUI VAE holding
the same seeded tiny weights as ours, and against what its model (model_base.WAN21_HuMo.extra_conds)
makes of the node's output: the reference latent it normalises (process_latent_in), the negative's
blank one. The audio is an AUDIO_ENCODER_OUTPUT of random tensors with whisper large v3's shapes
(33 hidden states of 1280), longer and shorter than the video; the reference image comes at
another size and aspect, so the crop-and-resize is compared too.

Tolerance: audio windows <= 1e-6 * max (the same interpolation); latents <= 1e-5 * max (the two
VAEs' own agreement, as the Fun conditioning tests).
"""

import pytest
import torch
from refs import comfy, comfy_extras
from vae_fixtures import rel_err, vae21_with_comfy

from wan.errors import WanInputError
from wan.job.conditioning_humo import humo_conditioning

W, H = 48, 32


@pytest.fixture(scope="module")
def nodes_wan():
    return comfy_extras("nodes_wan")


@pytest.fixture(scope="module")
def vae21():
    return vae21_with_comfy(seed=41)


def whisper_output(seconds: float, seed=3):
    """What encode_audio returns for whisper large v3 on ``seconds`` of 16 kHz audio (its input padded
    to 30 s: 1500 hidden states of each of its 33 layers)."""
    g = torch.Generator().manual_seed(seed)
    layers = [torch.randn(1, 1500, 1280, generator=g) for _ in range(33)]
    return {"encoded_audio": layers[-1], "encoded_audio_all_layers": layers, "audio_samples": int(seconds * 16000)}


def comfy_node(nodes_wan, vae, frames, audio=None, ref=None):
    cond = [[torch.zeros(1, 1, 8), {}]]
    pos, neg, latent = nodes_wan.WanHuMoImageToVideo.execute(cond, cond, vae, W, H, frames, 1, ref_image=ref,
                                                           audio_encoder_output=audio)
    return pos[0][1], neg[0][1], latent["samples"]


def _fmt():
    return comfy("comfy.latent_formats").Wan21()


@pytest.mark.parametrize("seconds", [3.0, 0.5], ids=["longer", "shorter"])
@torch.no_grad()
def test_humo_conditioning_matches_comfyui(nodes_wan, vae21, seconds):
    ours_vae, comfy_vae = vae21
    frames = 13
    audio = whisper_output(seconds)
    ref = torch.rand(1, 40, 72, 3, generator=torch.Generator().manual_seed(8))
    pos, neg, latent = comfy_node(nodes_wan, comfy_vae, frames, audio, ref)
    if seconds < frames / 25:
        with pytest.warns(UserWarning, match="silent"):
            got = humo_conditioning(ours_vae, W, H, frames, audio, ref)
    else:
        got = humo_conditioning(ours_vae, W, H, frames, audio, ref)
    assert got.latent_shape() == tuple(latent.shape)
    want_audio = pos["audio_embed"]
    assert got.humo.audio.shape == want_audio.shape
    assert (got.humo.audio - want_audio).abs().max() <= 1e-6 * want_audio.abs().max()
    assert not neg["audio_embed"].any()  # the negative is silent: ours gives it no audio (silence)
    fmt = _fmt()
    assert rel_err(got.humo.reference, fmt.process_in(pos["reference_latents"][-1])) <= 1e-5
    assert torch.allclose(got.humo.blank_reference, fmt.process_in(neg["reference_latents"][-1]), atol=1e-6)


@torch.no_grad()
def test_humo_without_audio_or_image(nodes_wan, vae21):
    ours_vae, comfy_vae = vae21
    pos, neg, latent = comfy_node(nodes_wan, comfy_vae, 9)
    got = humo_conditioning(ours_vae, W, H, 9)
    assert got.humo.audio is None and not pos["audio_embed"].any()  # silence both ways
    fmt = _fmt()
    for ours, theirs in ((got.humo.reference, pos), (got.humo.blank_reference, neg)):
        assert torch.allclose(ours, fmt.process_in(theirs["reference_latents"][-1]), atol=1e-6)


def test_a_wav2vec2_output_is_refused(vae21):
    wav2vec = {"encoded_audio": torch.zeros(1, 50, 1024), "audio_samples": 16000,
               "encoded_audio_all_layers": [torch.zeros(1, 50, 1024)] * 25}
    with pytest.raises(WanInputError, match="whisper large v3"):
        humo_conditioning(vae21[0], W, H, 9, wav2vec)
