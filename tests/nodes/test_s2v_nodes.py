"""The S2V nodes in process: registered under their names, audio_encoder_output is ComfyUI's
AUDIO_ENCODER_OUTPUT type (its AudioEncoderEncode output plugs in), the embeds equal the library's
conditioning, Wan Sound Extend continues a sampled LATENT, and bad inputs are refused naming them."""

import importlib

import pytest
import torch

from refs import comfy, import_pack
from vae_fixtures import pack_vae21


@pytest.fixture(scope="module")
def pack():
    name = import_pack().__name__
    return {m: importlib.import_module(f"{name}.{m}") for m in ("nodes.s2v", "wan.errors", "nodes",
                                                                 "wan.job.conditioning_s2v")}


@pytest.fixture(scope="module")
def vae(pack):
    return pack_vae21(seed=5)


def speech(frames=30):
    g = torch.Generator().manual_seed(2)
    layers = tuple(torch.randn(1, frames, 1024, generator=g) for _ in range(25))
    return {"encoded_audio": layers[-1], "encoded_audio_all_layers": layers, "audio_samples": frames * 320}


def test_registered_with_comfyui_audio_type(pack):
    reg = pack["nodes"]
    for key, title in (("WanSoundEmbeds", "Wan Sound Embeds"), ("WanSoundExtend", "Wan Sound Extend")):
        assert key in reg.NODE_CLASS_MAPPINGS and reg.NODE_DISPLAY_NAME_MAPPINGS[key] == title
    io = comfy("comfy_api.latest").io
    for cls in (pack["nodes.s2v"].WanSoundEmbeds, pack["nodes.s2v"].WanSoundExtend):
        assert cls.INPUT_TYPES()["optional"]["audio_encoder_output"][0] == io.AudioEncoderOutput.io_type


def test_embeds_and_extend(pack, vae):
    s2v, cond_mod = pack["nodes.s2v"], pack["wan.job.conditioning_s2v"]
    ref = torch.rand(1, 40, 36, 3)
    cond, offset = s2v.WanSoundEmbeds().encode(vae, 32, 32, 5, audio_encoder_output=speech(), ref_image=ref)
    want, want_offset = cond_mod.sound_conditioning(vae, 32, 32, 5, speech(), ref)
    assert offset == want_offset == 8
    for field in ("audio_embed", "reference", "control"):
        torch.testing.assert_close(getattr(cond.sound, field), getattr(want.sound, field), rtol=0, atol=0)
    assert cond.sound.audio_embed.device.type == "cpu"
    latent = {"samples": torch.randn(1, 16, 2, 4, 4)}
    nxt, offset = s2v.WanSoundExtend().encode(vae, 5, latent, audio_encoder_output=speech(), ref_image=ref)
    assert offset == 16 and nxt.sound.motion.shape == (1, 16, 2, 4, 4) and (nxt.width, nxt.height) == (32, 32)
    assert not torch.equal(nxt.sound.audio_embed, cond.sound.audio_embed)  # the next part of the speech


def test_bad_inputs_are_named(pack, vae):
    s2v, err = pack["nodes.s2v"], pack["wan.errors"].WanInputError
    with pytest.raises(err, match="video_latent"):
        s2v.WanSoundExtend().encode(vae, 5, torch.zeros(1, 16, 2, 4, 4))
    with pytest.raises(err, match="audio_encoder_output"):
        s2v.WanSoundEmbeds().encode(vae, 32, 32, 5, audio_encoder_output={"waveform": torch.zeros(1, 1, 10)})
