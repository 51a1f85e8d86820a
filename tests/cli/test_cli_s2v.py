"""``python -m wan generate`` on the Wan S2V model (tiny safetensors): --audio / --audio-encoder /
--reference-image reach the same job as the library's SoundPipeline (the same latent bit for bit),
speech longer than one clip is made clip by clip (the first clip equals a one-clip run, the speech
changes the result), and the S2V flags are refused on other models. The audio encoder is the audio
helpers' (wan.audio / wan.models.audio); here its output is an AUDIO_ENCODER_OUTPUT built from
random tensors, standing in for ``encode_speech``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cli_runs import files as base_files  # noqa: F401 (fixture: text encoder and VAE)
from cli_runs import generate_latent
from cli_runs import job_args
from text_fixtures import spiece_bytes  # noqa: F401 (fixture of base_files)
from dit_fixtures import random_weights as dit_weights
from wan.cli import main, s2v_args
from wan.cli.generate import _read_image
from wan.job.pipelines_s2v import SoundPipeline
from wan.models.dit.config import DIT_PRESETS

W, H, FRAMES = 64, 64, 5


def speech(frames=40, seed=3):
    g = torch.Generator().manual_seed(seed)
    layers = tuple(torch.randn(1, frames, 1024, generator=g) for _ in range(25))
    return {"encoded_audio": layers[-1], "encoded_audio_all_layers": layers, "audio_samples": frames * 320}


@pytest.fixture(scope="module")
def files(base_files):  # noqa: F811
    cfg = DIT_PRESETS["wan22_s2v_14b"].tiny(dim=128, ffn_dim=256, text_dim=64)
    save_file(dit_weights(cfg, seed=8), str(base_files / "s2v.safetensors"))
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((72, 60, 3)) * 255).astype(np.uint8)).save(base_files / "speaker.png")
    (base_files / "speech.wav").write_bytes(b"")  # read by the stand-in encoder only
    return base_files


def _args(d, dit, *extra):
    return job_args(d, f"{dit}.safetensors", "a speaker", (W, H), FRAMES, *extra)


def test_audio_and_reference_reach_the_pipeline(files, monkeypatch):
    calls = []
    monkeypatch.setattr(s2v_args, "encode_speech", lambda a, e: calls.append((a, e)) or speech())
    cli = generate_latent(_args(files, "s2v", "--audio", str(files / "speech.wav"), "--audio-encoder", "w2v.st",
                                "--reference-image", str(files / "speaker.png")), monkeypatch)
    assert calls == [(str(files / "speech.wav"), "w2v.st")]
    pipe = SoundPipeline.from_files(dit=files / "s2v.safetensors", text_encoder=files / "te.safetensors",
                                    vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    ref = _read_image(str(files / "speaker.png"))
    kw = dict(width=W, height=H, num_frames=FRAMES, steps=2, cfg=3.0, seed=7, output_type="latent", ref_image=ref)
    api = pipe("a speaker", audio_encoder_output=speech(), **kw)
    assert torch.equal(cli, api)
    assert api.shape[2] == 2 * 2  # 0.8 s of speech: two clips of 5 frames (2 latent frames each)
    first = pipe("a speaker", audio_encoder_output=speech(), clips=1, **kw)
    assert torch.equal(first, api[:, :, :2])
    other = pipe("a speaker", audio_encoder_output=speech(seed=4), **kw)
    assert (other - api).abs().max() > 1e-4


def test_refused_flags(files, capsys):
    assert main(["generate", *_args(files, "s2v", "--audio", str(files / "speech.wav"))]) == 1
    assert "give --audio and --audio-encoder together" in capsys.readouterr().err
    assert main(["generate", *_args(files, "s2v", "--image", str(files / "speaker.png"))]) == 1
    assert "Wan S2V takes --reference-image" in capsys.readouterr().err
