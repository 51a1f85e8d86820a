"""``python -m wan generate`` on the Wan Animate model (tiny safetensors): the replace-mode flags
(--background-video, --character-mask as a video or one image) reach the same job as the library's
Animate pipeline given the same frames (the same sampled latent bit for bit), the mask changes the
result, and the flags are refused for a model that takes no such input."""

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
from wan.job import pipelines
from wan.models.dit.config import DIT_PRESETS
from wan.video import write_video

W, H, FRAMES = 32, 32, 5


@pytest.fixture(scope="module")
def files(base_files):  # noqa: F811
    cfg = DIT_PRESETS["wan22_animate_14b"].tiny(dim=128, ffn_dim=256, text_dim=64)
    save_file(dit_weights(cfg, seed=8), str(base_files / "animate.safetensors"))
    rng = np.random.default_rng(5)
    for name in ("pose", "background"):
        frames = torch.from_numpy(rng.random((FRAMES, 48, 40, 3)).astype(np.float32))
        write_video(base_files / f"{name}.mp4", frames, fps=8.0, format="video/h264-mp4")
    mask = np.zeros((FRAMES, 48, 40, 3), np.float32)
    mask[:, 8:40, 10:30] = 1.0  # the character's box
    write_video(base_files / "mask.mp4", torch.from_numpy(mask), fps=8.0, format="video/h264-mp4")
    Image.fromarray((mask[0] * 255).astype(np.uint8)).save(base_files / "mask.png")
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(base_files / "ref.png")
    return base_files


def _args(d, dit, *extra):
    return job_args(d, f"{dit}.safetensors", "a dancer", (W, H), FRAMES, *extra)


def _api_latent(pipe, monkeypatch, **inputs):
    return api_latent(pipe, monkeypatch, "a dancer", (W, H), FRAMES, **inputs)


def test_replace_mode_flags(files, monkeypatch):
    replace = ("--reference-image", str(files / "ref.png"), "--pose-video", str(files / "pose.mp4"),
               "--background-video", str(files / "background.mp4"))
    cli = generate_latent(_args(files, "animate", *replace, "--character-mask", str(files / "mask.mp4")), monkeypatch)
    cli_png = generate_latent(_args(files, "animate", *replace, "--character-mask", str(files / "mask.png")),
                              monkeypatch)
    pipe = pipelines.AnimatePipeline.from_files(dit=files / "animate.safetensors", text_encoder=files / "te.safetensors",
                                                vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    inputs = dict(reference_image=_read_image(str(files / "ref.png")), pose_video=_read_video(str(files / "pose.mp4")),
                  background_video=_read_video(str(files / "background.mp4")))
    mask = _read_video(str(files / "mask.mp4"))[..., 0]
    assert torch.equal(cli, _api_latent(pipe, monkeypatch, character_mask=mask, **inputs))
    one = torch.from_numpy(np.asarray(Image.open(files / "mask.png"), dtype=np.float32)[None, ..., 0] / 255.0)
    assert torch.equal(cli_png, _api_latent(pipe, monkeypatch, character_mask=one, **inputs))
    whole = _api_latent(pipe, monkeypatch, character_mask=torch.ones_like(mask), **inputs)
    assert (whole - cli).abs().max() > 1e-4


def test_replace_flags_refused_elsewhere(files, capsys):
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(dim=128, ffn_dim=256, num_layers=1, text_dim=64)
    save_file(dit_weights(cfg, seed=8), str(files / "t2v.safetensors"))
    assert main(["generate", *_args(files, "t2v", "--background-video", str(files / "background.mp4"))]) == 1
    assert "need the Wan 2.2 Animate diffusion model" in capsys.readouterr().err
    assert main(["generate", *_args(files, "t2v", "--character-mask", str(files / "mask.png"))]) == 1
    assert "need the Wan 2.2 Animate diffusion model" in capsys.readouterr().err
