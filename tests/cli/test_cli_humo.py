"""``python -m wan generate`` on a tiny HuMo DiT: --audio (encoded through --audio-encoder) and
--reference-image reach the same job as the library's HumoPipeline (the same sampled latent bit for
bit), the audio changes the result, and flags HuMo takes no input of are refused. The audio file is
encoded by the audio library (helper modules wan.audio / wan.models.audio): here its output is an
AUDIO_ENCODER_OUTPUT built from random tensors with whisper large v3's shapes, put in its place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cli_runs import files as base_files  # noqa: F401 (fixture: text encoder and VAE)
from cli_runs import generate_latent
from cli_runs import job_args, api_latent
from text_fixtures import spiece_bytes  # noqa: F401 (fixture of base_files)
from dit_fixtures import random_weights as dit_weights
from wan.cli import humo_args, main
from wan.cli.generate import _read_image
from wan.job.pipelines_humo import HumoPipeline
from wan.models.dit.config import DIT_PRESETS

W, H, FRAMES = 32, 32, 5


def whisper(seed):
    g = torch.Generator().manual_seed(seed)
    return {"encoded_audio_all_layers": [torch.randn(1, 1500, 1280, generator=g) for _ in range(33)],
            "encoded_audio": None, "audio_samples": 16000}


@pytest.fixture(scope="module")
def files(base_files):  # noqa: F811
    cfg = DIT_PRESETS["humo_17b"].tiny(dim=128, ffn_dim=256, num_layers=1, text_dim=64)
    save_file(dit_weights(cfg, seed=8), str(base_files / "humo.safetensors"))
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(base_files / "ref.png")
    (base_files / "speech.wav").write_bytes(b"")
    (base_files / "whisper.safetensors").write_bytes(b"")
    return base_files


def _args(d, *extra):
    return job_args(d, "humo.safetensors", "a speaker", (W, H), FRAMES, *extra)


def _api_latent(pipe, monkeypatch, **inputs):
    return api_latent(pipe, monkeypatch, "a speaker", (W, H), FRAMES, **inputs)


def test_audio_and_reference(files, monkeypatch):
    calls = []
    monkeypatch.setattr(humo_args, "encode_audio_file", lambda a, e: calls.append((a, e)) or whisper(4))
    cli = generate_latent(_args(files, "--audio", str(files / "speech.wav"), "--audio-encoder",
                                str(files / "whisper.safetensors"), "--reference-image", str(files / "ref.png")),
                          monkeypatch)
    assert calls == [(str(files / "speech.wav"), str(files / "whisper.safetensors"))]
    pipe = HumoPipeline.from_files(dit=files / "humo.safetensors", text_encoder=files / "te.safetensors",
                                   vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    ref = _read_image(str(files / "ref.png"))
    api = _api_latent(pipe, monkeypatch, audio_encoder_output=whisper(4), reference_image=ref)
    assert torch.equal(cli, api)
    other = _api_latent(pipe, monkeypatch, audio_encoder_output=whisper(5), reference_image=ref)
    assert (other - api).abs().max() > 1e-4


def test_refused_flags(files, capsys):
    assert main(["generate", *_args(files, "--image", str(files / "ref.png"))]) == 1
    assert "HuMo takes --reference-image" in capsys.readouterr().err
    assert main(["generate", *_args(files, "--audio", str(files / "speech.wav"))]) == 1
    assert "--audio-encoder" in capsys.readouterr().err
