"""The Wan HuMo Embeds node in process: registered under its title, its audio input is ComfyUI's own
AUDIO_ENCODER_OUTPUT type (core's Audio Encoder Encode plugs in), its output is the library's
conditioning, short audio is padded with silence and said, and a reference image of another size is
centre-cropped and resized (the conditioning test compares both with ComfyUI's node)."""

import importlib

import pytest
import torch

from refs import comfy, import_pack
from vae_fixtures import pack_vae21


@pytest.fixture(scope="module")
def pack():
    name = import_pack().__name__
    return {m: importlib.import_module(f"{name}.{m}")
            for m in ("nodes.humo", "nodes", "wan.job.conditioning_humo", "wan.errors")}


@pytest.fixture(scope="module")
def vae(pack):
    return pack_vae21(seed=5)


def whisper(seconds, seed=2):
    g = torch.Generator().manual_seed(seed)
    return {"encoded_audio_all_layers": [torch.randn(1, 1500, 1280, generator=g) for _ in range(33)],
            "encoded_audio": None, "audio_samples": int(seconds * 16000)}


def test_registered_with_comfyui_audio_type(pack):
    reg = pack["nodes"]
    assert reg.NODE_DISPLAY_NAME_MAPPINGS["WanHuMoEmbeds"] == "Wan HuMo Embeds"
    io = comfy("comfy_api.latest").io
    ours = pack["nodes.humo"].WanHuMoEmbeds.INPUT_TYPES()["optional"]["audio_encoder_output"][0]
    assert ours == io.AudioEncoderOutput.io_type  # the output type of ComfyUI's AudioEncoderEncode


@torch.no_grad()
def test_node_output_is_the_library_conditioning(pack, vae):
    audio, ref = whisper(0.3), torch.rand(1, 40, 56, 3, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="silent"):  # 0.3 s of speech for 9 frames at 25 fps
        out = pack["nodes.humo"].WanHuMoEmbeds().encode(vae, 32, 32, 9, audio, ref)
    assert any("silent" in t for t in out["ui"]["text"])  # shown on the node too
    (got,) = out["result"]
    want = pack["wan.job.conditioning_humo"].humo_conditioning(vae, 32, 32, 9, audio, ref)
    assert torch.equal(got.humo.audio, want.humo.audio) and torch.equal(got.humo.reference, want.humo.reference)
    assert got.humo.audio.shape == (1, 3, 8, 5, 1280) and got.humo.reference.shape == (1, 16, 1, 4, 4)
    assert not got.humo.audio[0, 2, 4:].any() and got.humo.audio[0, 2, 3].any()  # frames 7.. past the speech: silent


def test_a_wav2vec2_output_is_refused(pack, vae):
    wav2vec = {"encoded_audio_all_layers": [torch.zeros(1, 50, 1024)] * 25, "audio_samples": 16000}
    with pytest.raises(pack["wan.errors"].WanInputError, match="whisper large v3"):
        pack["nodes.humo"].WanHuMoEmbeds().encode(vae, 32, 32, 9, wav2vec)


def test_sampler_names_a_model_file_that_is_not_humo(pack, vae):
    """HuMo embeds on another model: the Wan Sampler names the file before any model work."""
    import types

    sampler = importlib.import_module(import_pack().__name__ + ".nodes.sampler")
    config = importlib.import_module(import_pack().__name__ + ".wan.models.dit.config")
    out = pack["nodes.humo"].WanHuMoEmbeds().encode(vae, 32, 32, 5)
    (cond,) = out["result"] if isinstance(out, dict) else out
    model = types.SimpleNamespace(cfg=config.DIT_PRESETS["t2v_1_3b"], path="/models/wan2.1_t2v_1.3B_fp16.safetensors",
                                  name="wan2.1_t2v_1.3B_fp16.safetensors")
    with pytest.raises(pack["wan.errors"].WanFileError, match="wan2.1_t2v_1.3B_fp16.*Wan HuMo Embeds"):
        sampler.WanSampler().sample(model, None, cond, 2, 1.0, 5.0, 0, "euler", 1.0)
