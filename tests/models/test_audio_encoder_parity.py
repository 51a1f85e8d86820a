"""Our audio encoders (transformers' Wav2Vec2Model / WhisperEncoder on the published layout) against
ComfyUI 0.3.75's own Wav2Vec2Model and WhisperLargeV3 on the same tiny seeded files.

Compared: encoded_audio and every entry of encoded_audio_all_layers, and audio_samples. ComfyUI's
whisper computes its log-mel through torchaudio's MelSpectrogram, stubbed here with torch.stft and
transformers' mel_filter_bank (tests/support/torchaudio_stub.py); ours uses its own filters. Both
run fp32 weights in fp32 (ComfyUI's manual-cast ops compute in the input's float32).
"""

import pytest
import torch
from refs import comfy
from tiny_audio import wav2vec2_state, whisper_state, wav2vec2_template, whisper_template
import torchaudio_stub

from wan.models.audio import audio_encoder_from_state_dict

TOL = 1e-4  # fp32; the outputs are O(1) (layer-normed)


def _comfy_encoder(module: str, cls: str, sd: dict, prefix: str, **config):
    torchaudio_stub.install()
    ops = comfy("comfy.ops")
    model = getattr(comfy(module), cls)(dtype=torch.float32, device="cpu", operations=ops.manual_cast, **config)
    sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not missing, missing
    return model.eval()


def _compare(ours: dict, ref_out, ref_layers, samples):
    assert ours["audio_samples"] == samples
    assert ours["encoded_audio"].shape == ref_out.shape
    diffs = [(ours["encoded_audio"] - ref_out).abs().max().item()]
    assert len(ours["encoded_audio_all_layers"]) == len(ref_layers)
    for a, b in zip(ours["encoded_audio_all_layers"], ref_layers):
        assert a.shape == b.shape
        diffs.append((a - b).abs().max().item())
    print("max abs diff: output", diffs[0], "layers", diffs[1:])
    assert max(diffs) < TOL, diffs


@pytest.mark.parametrize("large,weight_norm,prefix", [(True, "gv", "wav2vec2."), (True, "param", ""),
                                                     (False, "gv", "")])
def test_wav2vec2_equals_comfyui(large, weight_norm, prefix):
    sd = wav2vec2_state(seed=3, prefix=prefix, large=large, weight_norm=weight_norm)
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 2, 16000, generator=g) * 0.3  # stereo, batch of two: mono mix, batch norm
    config = dict(embed_dim=128, num_heads=2, num_layers=2, conv_norm=large, conv_bias=large,
                  do_normalize=large, do_stable_layer_norm=large)
    ref = _comfy_encoder("comfy.audio_encoders.wav2vec2", "Wav2Vec2Model", sd, prefix, **config)
    with torch.no_grad():
        out, layers = ref(audio)
    ours = audio_encoder_from_state_dict(sd, dtype=torch.float32).encode(audio, 16000)
    _compare(ours, out, layers, audio.shape[2])


def test_whisper_equals_comfyui():
    sd = whisper_state(seed=4)
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(2, 1, 16000 * 2, generator=g) * 0.2
    ref = _comfy_encoder("comfy.audio_encoders.whisper", "WhisperLargeV3", sd, "model.", n_audio_state=128,
                         n_audio_head=2, n_audio_layer=2)
    with torch.no_grad():
        out, layers = ref(audio)
    ours = audio_encoder_from_state_dict(sd, dtype=torch.float32).encode(audio, 16000)
    _compare(ours, out, layers, audio.shape[2])


def test_tiny_templates_are_comfyui_layouts():
    """The hand-written tiny layouts are exactly what ComfyUI's classes hold (its parametrized
    positional conv named as torch saves it now)."""
    torchaudio_stub.install()
    with torch.device("meta"):
        w2v = comfy("comfy.audio_encoders.wav2vec2").Wav2Vec2Model(
            embed_dim=128, num_heads=2, num_layers=2, operations=comfy("comfy.ops").manual_cast)
        whisper = comfy("comfy.audio_encoders.whisper").WhisperLargeV3(
            n_audio_state=128, n_audio_head=2, n_audio_layer=2, operations=comfy("comfy.ops").manual_cast)
    assert {k: tuple(v.shape) for k, v in w2v.state_dict().items()} == wav2vec2_template(weight_norm="param")
    ref = {k: tuple(v.shape) for k, v in whisper.state_dict().items() if not k.startswith("feature_extractor.")}
    assert ref == whisper_template()


def test_log_mel_equals_transformers_feature_extractor():
    """Our whisper input against transformers' WhisperFeatureExtractor (numpy STFT and filters) for
    one clip (it floors per clip, ComfyUI and we per batch: the same for a batch of one)."""
    from transformers import WhisperFeatureExtractor
    from transformers.audio_utils import mel_filter_bank

    from wan.models.audio.mel import log_mel, mel_filters

    fb = mel_filter_bank(num_frequency_bins=201, num_mel_filters=128, min_frequency=0.0, max_frequency=8000.0,
                         sampling_rate=16000, norm="slaney", mel_scale="slaney")
    assert (mel_filters(128) - torch.from_numpy(fb)).abs().max() < 1e-12
    clip = torch.randn(1, 1, 16000 * 3, generator=torch.Generator().manual_seed(5)) * 0.1
    ref = WhisperFeatureExtractor(feature_size=128)(clip[0, 0].numpy(), sampling_rate=16000,
                                                     return_tensors="pt")["input_features"]
    ours = log_mel(clip)
    assert ours.shape == ref.shape == (1, 128, 3000)
    assert (ours - ref).abs().max() < 1e-5
