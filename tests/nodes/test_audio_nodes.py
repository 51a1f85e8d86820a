"""The audio nodes in-process (the pack imported as ComfyUI imports it, ComfyUI 0.3.75's folder_paths,
LoadAudio and AudioEncoderModel from the reference copy, a torchaudio stub for its imports): our
AUDIO equals core LoadAudio's, our encoding equals core's AudioEncoderModel on the same file, and
core's encode node takes our encoder."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from refs import comfy, comfy_extras, import_pack
from tiny_audio import wav2vec2_state, write_wav2vec2, write_whisper
from tiny_models import write_dit
import torchaudio_stub

PACK = "wan_pack_audio_test"
EXAMPLE = Path(__file__).resolve().parents[2] / "workflows" / "inputs" / "speech_tone.wav"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio_models")
    write_wav2vec2(d / "wav2vec2_tiny.safetensors", seed=5, prefix="wav2vec2.")
    write_whisper(d / "whisper_tiny.safetensors", seed=6)
    write_dit(d / "a_dit.safetensors", "t2v_1_3b")
    return d


@pytest.fixture
def nodes(models_dir, tmp_path, monkeypatch):
    torchaudio_stub.install()
    folder_paths = comfy("folder_paths")
    import_pack(PACK)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "audio_encoders", ([str(models_dir)], {".safetensors"}))
    inputs = tmp_path / "input"
    inputs.mkdir()
    shutil.copy(EXAMPLE, inputs / EXAMPLE.name)
    (inputs / "notes.txt").write_text("not audio")
    monkeypatch.setattr(folder_paths, "input_directory", str(inputs))
    module = sys.modules[f"{PACK}.nodes.audio"]
    monkeypatch.setattr(module, "MODEL_CACHE", sys.modules[f"{PACK}.nodes._common"].ModelCache())
    return module


def test_registered_under_the_agreed_names():
    pack = import_pack(PACK)
    for name, shown in (("WanLoadAudio", "Wan Load Audio"), ("WanAudioEncoderLoader", "Wan Audio Encoder Loader"),
                        ("WanAudioEncode", "Wan Audio Encode")):
        assert name in pack.NODE_CLASS_MAPPINGS and pack.NODE_DISPLAY_NAME_MAPPINGS[name] == shown


def test_load_audio_equals_core_load_audio(nodes):
    listed = nodes.WanLoadAudio.INPUT_TYPES()["required"]["audio"]
    assert listed[0] == [EXAMPLE.name] and "audio_upload" not in listed[1]  # see WanLoadAudio.INPUT_TYPES
    (ours,) = nodes.WanLoadAudio().load(EXAMPLE.name)
    (core,) = comfy_extras("nodes_audio").LoadAudio().load(EXAMPLE.name)
    assert set(ours) == set(core) and ours["sample_rate"] == core["sample_rate"] == 16000
    assert ours["waveform"].shape == core["waveform"].shape == (1, 1, 48000)
    assert torch.equal(ours["waveform"], core["waveform"])
    assert nodes.WanLoadAudio.VALIDATE_INPUTS("missing.wav") != True  # noqa: E712 - ComfyUI's protocol


def test_encoder_output_equals_core_audio_encoder_model(nodes, models_dir):
    assert set(nodes.WanAudioEncoderLoader.INPUT_TYPES()["required"]["audio_encoder_name"][0]) >= {
        "wav2vec2_tiny.safetensors", "whisper_tiny.safetensors"}
    (encoder,) = nodes.WanAudioEncoderLoader().load("wav2vec2_tiny.safetensors", "fp16")
    (audio,) = nodes.WanLoadAudio().load(EXAMPLE.name)
    (ours,) = nodes.WanAudioEncode().encode(encoder, audio)
    # ComfyUI's own wrapper (fp16 storage on the CPU, manual cast to the fp32 input) on the same file
    # at the tiny size its loader's size table does not know
    core = comfy("comfy.audio_encoders.audio_encoders").AudioEncoderModel(dict(
        model_type="wav2vec2", embed_dim=128, num_heads=2, num_layers=2, conv_norm=True, conv_bias=True,
        do_normalize=True, do_stable_layer_norm=True))
    sd = {k[len("wav2vec2."):]: v.half() for k, v in wav2vec2_state(seed=5, prefix="wav2vec2.").items()}
    core.load_sd(sd)
    ref = core.encode_audio(audio["waveform"], audio["sample_rate"])
    assert set(ours) == set(ref) and ours["audio_samples"] == ref["audio_samples"]
    diffs = [(a.float() - b.float()).abs().max().item()
             for a, b in zip((ours["encoded_audio"], *ours["encoded_audio_all_layers"]),
                             (ref["encoded_audio"], *ref["encoded_audio_all_layers"]))]
    print("max abs diff vs core AudioEncoderModel:", diffs)
    assert max(diffs) < 1e-4
    # core's AudioEncoderEncode calls encode_audio: ours answers it with the same dict
    again = encoder.encode_audio(audio["waveform"], audio["sample_rate"])
    assert torch.equal(again["encoded_audio"], ours["encoded_audio"])
    # and our encode node takes core's encoder
    (via_core,) = nodes.WanAudioEncode().encode(core, audio)
    assert torch.equal(via_core["encoded_audio"], ref["encoded_audio"])


def test_whisper_through_the_nodes_at_another_rate(nodes):
    (encoder,) = nodes.WanAudioEncoderLoader().load("whisper_tiny.safetensors", "fp32")
    audio = {"waveform": torch.randn(1, 2, 22050, generator=torch.Generator().manual_seed(0)) * 0.1,
             "sample_rate": 22050}
    (out,) = nodes.WanAudioEncode().encode(encoder, audio)
    assert out["audio_samples"] == 16000 and out["encoded_audio"].shape == (1, 1500, 128)
    assert len(out["encoded_audio_all_layers"]) == 3


def test_wrong_file_in_the_encoder_folder(nodes):
    errors = sys.modules[f"{PACK}.wan.errors"]  # the pack's own copy, as ComfyUI imports it
    with pytest.raises(errors.WanFileError, match=r"a_dit\.safetensors: not an audio encoder .*Wan DiT"):
        nodes.WanAudioEncoderLoader().load("a_dit.safetensors", "fp16")


def test_folder_registered_where_comfyui_lacks_it(nodes, monkeypatch):
    folder_paths = comfy("folder_paths")
    monkeypatch.delitem(folder_paths.folder_names_and_paths, "audio_encoders")
    nodes.register_audio_folder()
    paths, exts = folder_paths.folder_names_and_paths["audio_encoders"]
    assert paths == [str(Path(folder_paths.models_dir) / "audio_encoders")] and ".safetensors" in exts
