"""``python -m wan generate`` end to end on tiny model files written here in real safetensors format.

Checks: a playable mp4 with the requested frame count and size (read back by imageio-ffmpeg's own
ffmpeg), the same frames as the Python API for the same seed, a one-frame .png, the progress bar
on stderr, and refusals with their messages.
"""

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image
from cli_runs import H, W, _args, files, spiece_bytes  # noqa: F401 (fixtures)
from wan.cli import main
from wan.job.pipelines import T2VPipeline, find_components

FRAMES = 5


def test_writes_playable_mp4_matching_the_api(files, tmp_path, capsys):
    out = tmp_path / "fox.mp4"
    assert main(_args(files, out, "--frames", str(FRAMES), "--fps", "8")) == 0
    err = capsys.readouterr().err
    assert "[" + "#" * 30 + "] 2/2 steps" in err and "wrote" in err
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == FRAMES and secs == pytest.approx(FRAMES / 8, abs=0.01)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert tuple(meta["size"]) == (W, H)
    decoded = np.stack([np.frombuffer(f, np.uint8).reshape(H, W, 3) for f in reader]).astype(np.float32) / 255

    pipe = T2VPipeline.from_files(dit=files / "t2v_1_3b.safetensors", text_encoder=files / "te.safetensors",
                                  vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    frames = pipe("a red fox", width=W, height=H, num_frames=FRAMES, steps=2, cfg=3.0, seed=7)
    # H.264 in yuv420p is lossy on these noise-like frames; 8x8 block means survive it
    def blocks(v):
        return v.reshape(FRAMES, H // 8, 8, W // 8, 8, 3).mean(axis=(2, 4))

    err = np.abs(blocks(decoded) - blocks(frames.numpy())).max()
    other = pipe("a red fox", width=W, height=H, num_frames=FRAMES, steps=2, cfg=3.0, seed=8)
    assert err < 0.03 < np.abs(blocks(decoded) - blocks(other.numpy())).max()


def test_png_for_one_frame(files, tmp_path):
    out = tmp_path / "still.png"
    assert main(_args(files, out, "--quiet")) == 0
    with Image.open(out) as im:
        assert im.size == (W, H) and im.mode == "RGB"


def test_image_to_video_needs_clip(files, tmp_path, capsys):
    img = tmp_path / "start.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(img)
    out = tmp_path / "i2v.webm"
    # the I2V model needs CLIP; without it the error says so
    assert main(_args(files, out, "--image", str(img), "--frames", "5", dit="i2v_14b")) == 1
    assert "needs a CLIP vision encoder" in capsys.readouterr().err and not out.exists()


def test_refusals(files, tmp_path, capsys):
    assert main(_args(files, tmp_path / "x.avi")) == 2
    assert "--out must end in" in capsys.readouterr().err
    assert main(_args(files, tmp_path / "x.mp4", "--frames", "5", dit="i2v_14b")) == 1
    assert "is image-to-video: give --image" in capsys.readouterr().err
    assert main(_args(files, tmp_path / "x.png", "--frames", "5")) == 1
    assert ".png holds one frame" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_find_components_by_header(files, tmp_path):
    # names say nothing; roles come from the headers
    for src, name in (("t2v_1_3b", "a"), ("te", "b"), ("vae", "c")):
        (tmp_path / f"{name}.safetensors").write_bytes((files / f"{src}.safetensors").read_bytes())
    found = find_components(tmp_path)
    assert found == {"dit": str(tmp_path / "a.safetensors"), "text_encoder": str(tmp_path / "b.safetensors"),
                     "vae": str(tmp_path / "c.safetensors")}
