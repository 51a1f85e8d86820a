"""Audio encoder files: the published full-size layouts map 1:1 onto transformers' modules,
detection names each kind, wrong or damaged files are clear errors, and the stored dtype is kept."""

import sys

import pytest
import torch
from refs import comfy
from tiny_audio import write_wav2vec2, write_whisper
from tiny_models import write_dit, write_umt5
import torchaudio_stub

from wan.errors import WanFileError
from wan.models.audio import load_audio_encoder
from wan.models.audio.build import MissingPackageError, build_network
from wan.models.identify import identify, identify_file
from wan.weights.audio_names import read_layout, to_transformers


def _shapes(module, prefix=""):
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


def _comfy_full_size(kind: str, **config):
    """ComfyUI's own model at the size its loader picks for the published files, on meta."""
    torchaudio_stub.install()
    ops = comfy("comfy.ops").manual_cast
    with torch.device("meta"):
        if kind == "whisper":
            return comfy("comfy.audio_encoders.whisper").WhisperLargeV3(operations=ops)
        return comfy("comfy.audio_encoders.wav2vec2").Wav2Vec2Model(operations=ops, **config)


LARGE = dict(embed_dim=1024, num_heads=16, num_layers=24, conv_norm=True, conv_bias=True, do_normalize=True,
             do_stable_layer_norm=True)
BASE = dict(embed_dim=768, num_heads=12, num_layers=12, conv_norm=False, conv_bias=False, do_normalize=False,
            do_stable_layer_norm=False)


@pytest.mark.parametrize("kind,config,prefix,variant", [
    ("wav2vec2", LARGE, "wav2vec2.", "wav2vec2_large"), ("wav2vec2", BASE, "", "wav2vec2_base"),
    ("whisper", None, "model.", "whisper_large_v3")])
def test_published_layout_maps_one_to_one(kind, config, prefix, variant):
    ref = _comfy_full_size(kind, **(config or {}))
    names = {k: v for k, v in _shapes(ref, prefix).items() if ".feature_extractor.mel_spectrogram" not in k
             and not k.startswith("model.feature_extractor.")}
    if kind == "whisper":  # WhisperLargeV3's "encoder." is WhisperModel's model.encoder.
        names = {k: v for k, v in names.items() if k.startswith("model.encoder.")}
    layout = read_layout(names)
    assert (layout.kind, layout.variant, layout.heads) == (kind, variant, (config or {}).get("num_heads", 20))
    assert layout.detail.startswith(f"an audio encoder ({variant}")
    with torch.device("meta"):
        network = build_network(layout)
    mapped = to_transformers(layout, names)
    assert mapped == _shapes(network)  # every tensor, same shape, nothing left over
    assert identify(names).role == "audio_encoder" and identify(names).variant == variant


def test_weight_norm_as_torch_saved_it_before_parametrizations():
    names = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                 "weight_v"): v
             for k, v in _shapes(_comfy_full_size("wav2vec2", **LARGE)).items()}
    layout = read_layout(names)
    with torch.device("meta"):
        assert to_transformers(layout, names) == _shapes(build_network(layout))


def test_stored_dtype_kept_and_computation_in_fp32(tmp_path):
    path = write_wav2vec2(tmp_path / "w2v.safetensors")  # fp16, as published
    half = load_audio_encoder(path, dtype=torch.float16)
    full = load_audio_encoder(path, dtype=torch.float32)
    audio = torch.randn(1, 1, 8000, generator=torch.Generator().manual_seed(2))
    a, b = half.encode(audio, 16000), full.encode(audio, 16000)
    assert {p.dtype for p in half.parameters()} == {torch.float16}  # put back after encoding
    assert not any(p.is_inference() for p in half.parameters())  # still ordinary tensors for ComfyUI
    assert a["encoded_audio"].dtype == torch.float32
    # the fp16 file's values are exact in both, and both compute in fp32 as ComfyUI's manual cast
    assert torch.equal(a["encoded_audio"], b["encoded_audio"])
    assert (a["audio_samples"], a["encoded_audio"].shape[1]) == (8000, 24)  # 320x downsampling, 20 ms frames


def test_identify_names_tiny_files(tmp_path):
    w = identify_file(write_wav2vec2(tmp_path / "a.safetensors", large=False))
    h = identify_file(write_whisper(tmp_path / "b.safetensors"))
    assert (w.role, h.role) == ("audio_encoder", "audio_encoder")
    assert "wav2vec2" in w.detail and "whisper" in h.detail


@pytest.mark.parametrize("writer,what", [(lambda p: write_dit(p, "t2v_1_3b"), "Wan DiT"),
                                         (write_umt5, "UMT5")])
def test_wrong_file_names_file_and_kind(tmp_path, writer, what):
    path = writer(tmp_path / "not_audio.safetensors")
    with pytest.raises(WanFileError, match=rf"not_audio\.safetensors: not an audio encoder.*{what}"):
        load_audio_encoder(path)


def test_damaged_and_pickled_files_are_refused(tmp_path):
    good = write_whisper(tmp_path / "w.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WanFileError, match=r"cut\.safetensors"):
        load_audio_encoder(cut)
    pickle = tmp_path / "enc.pt"
    pickle.write_bytes(b"\x80\x04not loaded")
    with pytest.raises(WanFileError, match=r"enc\.pt: .*never pickles"):
        load_audio_encoder(pickle)


def test_missing_transformers_says_what_to_install(tmp_path, monkeypatch):
    path = write_wav2vec2(tmp_path / "w.safetensors")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(MissingPackageError, match=r'pip install "comfyui-wan-nodes\[audio\]"'):
        load_audio_encoder(path)
