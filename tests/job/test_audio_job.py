"""wan.job.audio.encode_audio_file (what the S2V/HuMo pipelines call) against ComfyUI 0.3.75's own
chain on the same files: LoadAudio's decoder, then its AudioEncoderModel.encode_audio."""

from pathlib import Path

import pytest
import torch
from refs import comfy, comfy_extras
from tiny_audio import wav2vec2_state, write_wav2vec2
import torchaudio_stub

from wan.errors import WanFileError
from wan.job.audio import encode_audio_file, load_audio_encoder
from wan.job.options import LoadOptions

EXAMPLE = Path(__file__).resolve().parents[2] / "workflows" / "inputs" / "speech_tone.wav"


def test_encode_audio_file_equals_comfyuis_chain(tmp_path):
    torchaudio_stub.install()
    comfy("comfy.model_patcher")  # AudioEncoderModel reaches it as an attribute of comfy
    path = write_wav2vec2(tmp_path / "w2v.safetensors", seed=8, large=False)
    audio, ours = encode_audio_file(path, EXAMPLE)
    waveform, rate = comfy_extras("nodes_audio").load(str(EXAMPLE))
    assert torch.equal(audio["waveform"], waveform[None]) and audio["sample_rate"] == rate
    core = comfy("comfy.audio_encoders.audio_encoders").AudioEncoderModel(dict(
        model_type="wav2vec2", embed_dim=128, num_heads=2, num_layers=2, conv_norm=False, conv_bias=False,
        do_normalize=False, do_stable_layer_norm=False))
    core.load_sd({k: v.half() for k, v in wav2vec2_state(seed=8, large=False).items()})
    ref = core.encode_audio(waveform[None], rate)
    assert ours["audio_samples"] == ref["audio_samples"] == 48000
    assert ours["encoded_audio"].shape == ref["encoded_audio"].shape == (1, 149, 128)
    for a, b in zip((ours["encoded_audio"], *ours["encoded_audio_all_layers"]),
                    (ref["encoded_audio"], *ref["encoded_audio_all_layers"])):
        assert (a - b.float()).abs().max() < 1e-4


def test_a_loaded_encoder_is_reused_and_bad_audio_names_the_file(tmp_path):
    encoder = load_audio_encoder(write_wav2vec2(tmp_path / "w2v.safetensors"), LoadOptions(dtype=torch.float32))
    _, out = encode_audio_file(encoder, EXAMPLE)
    assert out["encoded_audio"].shape == (1, 149, 128)
    bad = tmp_path / "voice.wav"
    bad.write_text("no samples here")
    with pytest.raises(WanFileError, match=r"^voice\.wav: "):
        encode_audio_file(encoder, bad)
