"""``python -m wan generate`` with Phantom's and ATI's flags (tiny safetensors): --subject-image
(repeatable, images of different sizes) with --subject-cfg on a text-to-video model, and --tracks
with --image on an image-to-video model, reach the same job as the library's PhantomPipeline and
ATIPipeline given the same inputs (the same sampled latent bit for bit); the inputs change the
result; the flags are refused where the model or the other flags do not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_models
from cli_runs import files as base_files  # noqa: F401 (fixture: text encoder, VAE, t2v and i2v DiTs)
from cli_runs import generate_latent
from cli_runs import job_args, api_latent
from text_fixtures import spiece_bytes  # noqa: F401 (fixture of base_files)
from wan.cli import main
from wan.cli.generate import _read_image
from wan.job.pipelines_phantom import ATIPipeline, PhantomPipeline

W, H, FRAMES = 32, 32, 5
# on a 32x32 video the 4x4 latent grid sits at pixels 0, 10.67, 21.33, 32: tracks that end on it
# patch y visibly (the patch weight falls as exp(-temperature * squared distance))
TRACKS = [[{"x": 32 * i / 360, "y": 64 / 3} for i in range(121)], [{"x": 64 / 3, "y": 32 / 3} for _ in range(121)]]


@pytest.fixture(scope="module")
def files(base_files):  # noqa: F811
    rng = np.random.default_rng(11)
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(base_files / "subject_a.png")
    Image.fromarray((rng.random((64, 32, 3)) * 255).astype(np.uint8)).save(base_files / "subject_b.png")
    (base_files / "tracks.json").write_text(json.dumps(TRACKS))
    (base_files / "broken.json").write_text('[[{"x": 1, "y": ]]')
    tiny_models.write_clip_vision(base_files / "clip.safetensors")
    return base_files


def _args(d, dit, *extra):
    return job_args(d, f"{dit}.safetensors", "a red fox", (W, H), FRAMES, *extra)


def _api_latent(pipe, monkeypatch, cfg=3.0, **inputs):
    return api_latent(pipe, monkeypatch, "a red fox", (W, H), FRAMES, cfg=cfg, **inputs)


def test_subject_images(files, monkeypatch):
    subjects = ("--subject-image", str(files / "subject_a.png"), "--subject-image", str(files / "subject_b.png"))
    cli = generate_latent(_args(files, "t2v_1_3b", *subjects, "--subject-cfg", "4"), monkeypatch)
    pipe = PhantomPipeline.from_files(dit=files / "t2v_1_3b.safetensors", text_encoder=files / "te.safetensors",
                                      vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    images = [_read_image(str(files / "subject_a.png")), _read_image(str(files / "subject_b.png"))]
    api = _api_latent(pipe, monkeypatch, subject_images=images, subject_cfg=4.0)
    assert torch.equal(cli, api)
    plain = generate_latent(_args(files, "t2v_1_3b"), monkeypatch)
    assert plain.shape == api.shape and (plain - api).abs().max() > 1e-4
    other_scale = _api_latent(pipe, monkeypatch, subject_images=images, subject_cfg=1.0)
    assert (other_scale - api).abs().max() > 1e-4
    one = _api_latent(pipe, monkeypatch, subject_images=images[:1], subject_cfg=4.0)
    assert (one - api).abs().max() > 1e-4


def test_subject_cfg_default_and_text_cfg_one(files, monkeypatch):
    """At cfg 1 the dual CFG still takes the negative prompt's passes (DualCFGGuider does)."""
    subject = ("--subject-image", str(files / "subject_a.png"))
    cli = generate_latent(_args(files, "t2v_1_3b", *subject, "--cfg", "1"), monkeypatch)  # the last --cfg wins
    pipe = PhantomPipeline.from_files(dit=files / "t2v_1_3b.safetensors", text_encoder=files / "te.safetensors",
                                      vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    image = _read_image(str(files / "subject_a.png"))
    assert torch.equal(cli, _api_latent(pipe, monkeypatch, cfg=1.0, subject_images=image, subject_cfg=5.0))
    no_subject_guidance = _api_latent(pipe, monkeypatch, cfg=1.0, subject_images=image, subject_cfg=1.0)
    assert (no_subject_guidance - cli).abs().max() > 1e-4


def test_tracks(files, monkeypatch):
    image = ("--image", str(files / "subject_a.png"), "--clip-vision", str(files / "clip.safetensors"))
    cli = generate_latent(_args(files, "i2v_14b", *image, "--tracks", str(files / "tracks.json"),
                                "--track-temperature", "20", "--track-topk", "1"), monkeypatch)
    pipe = ATIPipeline.from_files(dit=files / "i2v_14b.safetensors", text_encoder=files / "te.safetensors",
                                  vae=files / "vae.safetensors", clip_vision=files / "clip.safetensors",
                                  dtype=torch.float32, device="cpu")
    start = _read_image(str(files / "subject_a.png"))
    api = _api_latent(pipe, monkeypatch, image=start, tracks=json.dumps(TRACKS), temperature=20.0, topk=1)
    assert torch.equal(cli, api)
    plain = generate_latent(_args(files, "i2v_14b", *image), monkeypatch)
    assert (plain - api).abs().max() > 1e-4
    assert torch.equal(plain, _api_latent(pipe, monkeypatch, image=start))  # no tracks: image-to-video
    defaults = _api_latent(pipe, monkeypatch, image=start, tracks=json.dumps(TRACKS))
    assert (defaults - api).abs().max() > 1e-4


@pytest.mark.parametrize("dit, extra, message", [
    ("i2v_14b", ("--image", "subject_a.png", "--subject-image", "subject_b.png"),
     "subject images (Phantom) need a text-to-video model"),
    ("t2v_1_3b", ("--tracks", "tracks.json"), "tracks (ATI) need the Wan2.1 ATI image-to-video model"),
    ("t2v_1_3b", ("--subject-cfg", "3"), "--subject-cfg tunes Phantom's subject images"),
    ("t2v_1_3b", ("--track-topk", "3"), "--track-topk tune ATI's tracks"),
    ("i2v_14b", ("--image", "subject_a.png", "--tracks", "broken.json"), "broken.json is not valid JSON"),
    ("i2v_14b", ("--image", "subject_a.png", "--tracks", "missing.json"), "cannot read --tracks"),
    ("i2v_14b", ("--image", "subject_a.png", "--tracks", "tracks.json", "--track-topk", "11"),
     "topk must be an integer in 1..10"),
])
def test_refused(files, capsys, dit, extra, message):
    extra = [str(files / v) if v.endswith((".png", ".json")) else v for v in extra]
    assert main(["generate", *_args(files, dit, "--clip-vision", str(files / "clip.safetensors"), *extra)]) == 1
    assert message in capsys.readouterr().err
