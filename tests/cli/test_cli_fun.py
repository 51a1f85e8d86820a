"""``python -m wan generate`` on the Fun models (tiny safetensors): the control video, start image
and camera motion flags reach the same job as the library's Fun pipelines (the same sampled latent
bit for bit), the input changes the result, and flags a Fun model takes no such input are refused."""

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
from wan.cli import main
from wan.cli.generate import _read_image, _read_video
from wan.job.pipelines_fun import FunCameraPipeline, FunControlPipeline
from wan.models.dit.config import DIT_PRESETS
from wan.video import write_video

W, H, FRAMES = 32, 32, 5


@pytest.fixture(scope="module")
def files(base_files):  # noqa: F811
    for variant in ("fun_control_ref_1_3b", "camera_14b"):
        cfg = DIT_PRESETS[variant].tiny(dim=128, ffn_dim=256, num_layers=1, text_dim=64)
        save_file(dit_weights(cfg, seed=8), str(base_files / f"{variant}.safetensors"))
    rng = np.random.default_rng(3)
    frames = torch.from_numpy(rng.random((FRAMES, 48, 40, 3)).astype(np.float32))
    write_video(base_files / "control.mp4", frames, fps=8.0, format="video/h264-mp4")
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(base_files / "ref.png")
    return base_files


def _args(d, dit, *extra):
    return job_args(d, f"{dit}.safetensors", "a dancer", (W, H), FRAMES, *extra)


def _api_latent(pipe, monkeypatch, **inputs):
    return api_latent(pipe, monkeypatch, "a dancer", (W, H), FRAMES, **inputs)


def test_control_video_and_reference(files, monkeypatch):
    cli = generate_latent(_args(files, "fun_control_ref_1_3b", "--control-video", str(files / "control.mp4"),
                                "--reference-image", str(files / "ref.png")), monkeypatch)
    pipe = FunControlPipeline.from_files(dit=files / "fun_control_ref_1_3b.safetensors",
                                         text_encoder=files / "te.safetensors", vae=files / "vae.safetensors",
                                         dtype=torch.float32, device="cpu")
    control = _read_video(str(files / "control.mp4"))
    ref = _read_image(str(files / "ref.png"))
    api = _api_latent(pipe, monkeypatch, control_video=control, reference_image=ref)
    assert torch.equal(cli, api)
    other = _api_latent(pipe, monkeypatch, control_video=control.flip(1), reference_image=ref)
    assert (other - api).abs().max() > 1e-4
    no_ref = _api_latent(pipe, monkeypatch, control_video=control)
    assert (no_ref - api).abs().max() > 1e-4


def test_camera_motion(files, monkeypatch):
    pan = generate_latent(_args(files, "camera_14b", "--camera-motion", "Pan Left", "--camera-speed", "2"), monkeypatch)
    pipe = FunCameraPipeline.from_files(dit=files / "camera_14b.safetensors", text_encoder=files / "te.safetensors",
                                        vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    assert torch.equal(pan, _api_latent(pipe, monkeypatch, camera_motion_name="Pan Left", camera_speed=2.0))
    static = _api_latent(pipe, monkeypatch, camera_motion_name="Static")
    assert (static - pan).abs().max() > 1e-4


def test_refused_flags(files, capsys):
    assert main(["generate", *_args(files, "fun_control_ref_1_3b", "--end-image", str(files / "ref.png"))]) == 1
    assert "--end-image: not an input of this diffusion model (Fun control" in capsys.readouterr().err
    assert main(["generate", *_args(files, "fun_control_ref_1_3b")]) == 1
    assert "Fun control needs control_video" in capsys.readouterr().err
    assert main(["generate", *_args(files, "camera_14b", "--control-video", str(files / "control.mp4"))]) == 1
    assert "--control-video: not an input" in capsys.readouterr().err
