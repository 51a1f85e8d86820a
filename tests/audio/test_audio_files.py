"""Decoding audio files against ComfyUI 0.3.75's own LoadAudio decoder (PyAV), the bundled example
clip, ComfyUI's AUDIO dict, and clear errors for files that are not audio."""

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from refs import comfy_extras
import torchaudio_stub

from wan.audio import from_audio_dict, load_audio, mono, to_audio_dict
from wan.errors import WanFileError, WanInputError

EXAMPLE = Path(__file__).resolve().parents[2] / "workflows" / "inputs" / "speech_tone.wav"


def _comfy_load(path):
    torchaudio_stub.install()
    return comfy_extras("nodes_audio").load(str(path))


def _ffmpeg(args):
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def test_example_clip_is_a_real_wav_our_loader_reads():
    with wave.open(str(EXAMPLE)) as w:  # the standard library's reader: independent of ffmpeg
        rate, channels, frames = w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())
    expected = torch.from_numpy(np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0)
    waveform, sr = load_audio(EXAMPLE)
    assert (sr, channels) == (rate, 1) and waveform.shape == (1, expected.shape[0])
    assert 2.0 <= expected.shape[0] / rate <= 6.0 and EXAMPLE.stat().st_size < 300_000
    assert torch.equal(waveform[0], expected)


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    """A 44.1 kHz stereo clip as float32 raw samples, and ffmpeg's encodings of it."""
    d = tmp_path_factory.mktemp("clips")
    t = np.arange(44100) / 44100
    pcm = np.stack([0.5 * np.sin(2 * np.pi * 330 * t), 0.25 * np.sin(2 * np.pi * 550 * t)], 1).astype("<f4")
    raw = d / "clip.f32"
    pcm.tofile(raw)
    files = {}
    for ext in ("wav", "flac", "mp3", "m4a", "ogg"):
        out = d / f"clip.{ext}"
        _ffmpeg(["-f", "f32le", "-ar", "44100", "-ac", "2", "-i", str(raw), str(out)])
        files[ext] = out
    return files


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg"])
def test_formats_decode_as_comfyui_decodes_them(stereo, ext):
    ours, rate = load_audio(stereo[ext])
    ref, ref_rate = _comfy_load(stereo[ext])
    assert rate == ref_rate == 44100 and ours.dtype == torch.float32
    assert ours.shape == ref.shape and ours.shape[0] == 2
    # lossless formats are exact; lossy decoders agree to float rounding (sample-format conversion)
    assert (ours - ref).abs().max() < (1e-7 if ext in ("wav", "flac") else 1e-4)


def test_m4a_drops_the_encoder_priming_as_its_edit_list_says(stereo):
    """ComfyUI's PyAV loop keeps AAC's priming samples (1024 of silence and ramp before the clip,
    56 ms here); ffmpeg honours the file's edit list, so our samples line up with the source."""
    ours, rate = load_audio(stereo["m4a"])
    ref, _ = _comfy_load(stereo["m4a"])
    assert rate == 44100 and ours.shape == (2, 44100) and ref.shape[1] > 44100
    t = np.arange(44100) / 44100
    source = torch.tensor(np.stack([0.5 * np.sin(2 * np.pi * 330 * t), 0.25 * np.sin(2 * np.pi * 550 * t)]),
                          dtype=torch.float32)
    assert (ours - source)[:, 2000:-2000].abs().max() < 0.05  # AAC's coding error at 128 kb/s


def test_a_videos_sound_track(tmp_path, stereo):
    video = tmp_path / "talk.mp4"
    _ffmpeg(["-f", "lavfi", "-i", "color=c=gray:s=32x32:d=1", "-i", str(stereo["wav"]), "-shortest",
             "-c:v", "mpeg4", "-c:a", "aac", str(video)])
    waveform, rate = load_audio(video)
    assert rate == 44100 and waveform.shape[0] == 2 and waveform.shape[1] > 40000


@pytest.mark.parametrize("name,content,why", [
    ("missing.wav", None, "not found"),
    ("empty.wav", b"", "empty"),
    ("notes.mp3", b"these are not the samples you are looking for\n" * 20, "not a readable audio file"),
    ("header_only.wav", None, "no audio samples|not a readable"),
    ("picture.flac", None, "not a readable audio file"),
])
def test_bad_files_are_errors_naming_the_file(tmp_path, name, content, why):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    elif name == "header_only.wav":
        path.write_bytes(EXAMPLE.read_bytes()[:44])  # a valid header, the samples cut off
    elif name == "picture.flac":  # an image under an audio name: no audio stream
        _ffmpeg(["-f", "lavfi", "-i", "color=c=red:s=8x8:d=0.04", "-frames:v", "1", "-f", "image2",
                 "-c:v", "png", str(path)])
    with pytest.raises(WanFileError, match=rf"^{name.replace('.', '[.]')}: .*({why})"):
        load_audio(path)


def test_longer_than_the_limit_is_an_error(tmp_path):
    with pytest.raises(WanFileError, match=r"speech_tone\.wav: the audio is longer than 2 s"):
        load_audio(EXAMPLE, max_seconds=2.0)
    assert load_audio(EXAMPLE, max_seconds=3.0)[0].shape == (1, 48000)


def test_audio_dict_round_trip_and_checks():
    waveform = torch.randn(2, 4000)
    audio = to_audio_dict(waveform, 22050)
    assert audio["waveform"].shape == (1, 2, 4000) and audio["sample_rate"] == 22050
    w, r = from_audio_dict(audio)
    assert torch.equal(w[0], waveform) and r == 22050
    assert torch.equal(mono(w), waveform.mean(0)[None, None])
    for bad in ({"waveform": torch.zeros(2, 10), "sample_rate": 16000}, {"waveform": torch.zeros(1, 1, 10)},
                {"waveform": torch.zeros(1, 1, 10), "sample_rate": 0}, "speech.wav",
                {"waveform": torch.zeros(1, 1, 10, dtype=torch.int16), "sample_rate": 16000}):
        with pytest.raises(WanInputError, match="audio"):
            from_audio_dict(bad)
