"""``python -m wan generate`` on the Wan 2.2 Fun 5B control model with the Wan 2.2 VAE (tiny
safetensors: a 5B-layout control DiT on 48-channel latents and a Wan 2.2 VAE): the control video
and reference image reach the same job as the library's FunControlPipeline (the same sampled latent
bit for bit), each input changes the result, and a Wan 2.1 VAE beside the 5B model is refused
before sampling, naming the VAE needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cli_runs import files as base_files  # noqa: F401 (fixture: text encoder and Wan 2.1 VAE)
from cli_runs import generate_latent
from cli_runs import job_args, api_latent
from text_fixtures import spiece_bytes  # noqa: F401 (fixture of base_files)
from dit_fixtures import random_weights as dit_weights
from wan.cli import main
from wan.cli.generate import _read_image, _read_video
from wan.install.tiny import write_vae
from wan.job.pipelines_fun import FunControlPipeline
from wan.models.dit.config import DIT_PRESETS
from wan.video import write_video

W, H, FRAMES = 64, 32, 5
DIT = "wan22_fun_control_5b"


@pytest.fixture(scope="module")
def files(base_files):  # noqa: F811
    cfg = DIT_PRESETS[DIT].tiny(dim=128, ffn_dim=256, num_layers=1, text_dim=64)
    save_file(dit_weights(cfg, seed=8), str(base_files / f"{DIT}.safetensors"))
    write_vae(base_files / "vae22.safetensors", "2.2")
    rng = np.random.default_rng(5)
    frames = torch.from_numpy(rng.random((FRAMES, 48, 40, 3)).astype(np.float32))  # another size and aspect
    write_video(base_files / "control.mp4", frames, fps=8.0, format="video/h264-mp4")
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(base_files / "ref.png")
    return base_files


def _args(d, *extra, vae="vae22"):
    return job_args(d, f"{DIT}.safetensors", "a dancer", (W, H), FRAMES, *extra, vae=f"{vae}.safetensors")


def _api_latent(pipe, monkeypatch, **inputs):
    return api_latent(pipe, monkeypatch, "a dancer", (W, H), FRAMES, **inputs)


def test_control_video_and_reference_with_the_wan22_vae(files, monkeypatch):
    cli = generate_latent(_args(files, "--control-video", str(files / "control.mp4"),
                                "--reference-image", str(files / "ref.png")), monkeypatch)
    assert cli.shape == (1, 48, (FRAMES - 1) // 4 + 1, H // 16, W // 16)  # Wan 2.2 VAE latent
    pipe = FunControlPipeline.from_files(dit=files / f"{DIT}.safetensors", text_encoder=files / "te.safetensors",
                                         vae=files / "vae22.safetensors", dtype=torch.float32, device="cpu")
    control = _read_video(str(files / "control.mp4"))
    ref = _read_image(str(files / "ref.png"))
    api = _api_latent(pipe, monkeypatch, control_video=control, reference_image=ref)
    assert torch.equal(cli, api)
    other = _api_latent(pipe, monkeypatch, control_video=control.flip(1), reference_image=ref)
    assert (other - api).abs().max() > 1e-4
    no_ref = _api_latent(pipe, monkeypatch, control_video=control)
    assert (no_ref - api).abs().max() > 1e-4
    with_start = _api_latent(pipe, monkeypatch, control_video=control, image=ref)
    assert (with_start - no_ref).abs().max() > 1e-4


def test_wan21_vae_is_refused(files, capsys):
    assert main(["generate", *_args(files, "--control-video", str(files / "control.mp4"), vae="vae")]) == 1
    assert "Wan2.2 VAE needed" in capsys.readouterr().err
