"""Decode straight to a file (wan.job.decode_file) against the in-memory path it replaces: Wan VAE
Decode's frames (``decode_frames``) written by Video Combine's writer (``write_video``). The frames
piped to ffmpeg equal the in-memory decode's, converted to uint8 by rounding; the files decode to the
same frames and carry the same audio and metadata; cancel leaves nothing; the node writes into
ComfyUI's output folder; a pipeline's ``write`` is its frames in a file."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

import refs
from cli_runs import H, W, files, spiece_bytes  # noqa: F401 (fixtures)
from vae_fixtures import TINY21, random_weights
from wan.errors import WanInputError
from wan.job import decode_file
from wan.job.pipelines import T2VPipeline, decode_frames
from wan.models.vae.wan21 import WanVAE
from wan.runtime.cancel import Cancelled, cancel_hook
from wan.video import write_video

T, h, w = 3, 4, 6  # 9 frames of 48x32


@pytest.fixture(scope="module")
def vae():
    torch.set_num_threads(2)
    model = WanVAE(TINY21).eval()
    model.load_state_dict(random_weights(model.state_dict(), seed=2))
    return model


@pytest.fixture(scope="module")
def latent():
    return torch.randn(1, 16, T, h, w, generator=torch.Generator().manual_seed(3))


def _expected(vae, latent, tile=None) -> np.ndarray:
    """The in-memory decode as uint8, rounded: what Video Combine pipes to ffmpeg."""
    frames = decode_frames(vae, latent, tile=tile)
    return (frames * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def _piped(monkeypatch) -> list:
    """The frames decode_to_file hands to the writer, copied as they pass."""
    seen = []
    write = decode_file.write_frames

    def spy(path, frames, **kw):
        return write(path, (seen.append(np.array(f)) or f for f in frames), **kw)

    monkeypatch.setattr(decode_file, "write_frames", spy)
    return seen


def _read(path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader])


@pytest.mark.parametrize("tile", [None, (16, 8)])
def test_frames_piped_equal_the_in_memory_decode(vae, latent, tmp_path, monkeypatch, tile):
    seen = _piped(monkeypatch)
    out = decode_file.decode_to_file(vae, latent, tmp_path / "a.mp4", fps=8, format="video/h264-mp4", tile=tile)
    assert out == tmp_path / "a.mp4" and out.is_file()
    expected = _expected(vae, latent, tile)
    assert expected.shape == (9, 8 * h, 8 * w, 3)
    np.testing.assert_array_equal(np.stack(seen), expected)


@pytest.mark.parametrize("fmt", ["video/h264-mp4", "video/webm", "image/gif"])
def test_file_equals_video_combine_of_the_decoded_frames(vae, latent, tmp_path, fmt):
    ext = {"video/h264-mp4": "mp4", "video/webm": "webm", "image/gif": "gif"}[fmt]
    audio = None
    if fmt != "image/gif":
        t = torch.arange(8000) / 8000
        audio = (torch.stack([torch.sin(2 * torch.pi * 440 * t)] * 2), 8000)
    kw = dict(fps=8, format=fmt, audio=audio, metadata={"prompt": {"1": {"x": 2}}, "workflow": {"nodes": []}})
    ours = decode_file.decode_to_file(vae, latent, tmp_path / f"ours.{ext}", **kw)
    combine = write_video(tmp_path / f"combine.{ext}", decode_frames(vae, latent), **kw)
    frames = _read(ours)
    assert len(frames) == 9
    np.testing.assert_array_equal(frames, _read(combine))
    if fmt == "image/gif":
        with Image.open(ours) as a, Image.open(combine) as b:
            assert a.info["comment"] == b.info["comment"] and b"workflow" in a.info["comment"]
    else:
        sound = _ffmpeg(ours, "-map", "0:a", "-f", "f32le")
        assert len(sound) > 0 and sound == _ffmpeg(combine, "-map", "0:a", "-f", "f32le")
        tags = _ffmpeg(ours, "-f", "ffmetadata")
        assert tags == _ffmpeg(combine, "-f", "ffmetadata") and b"workflow=" in tags.lower()


def _ffmpeg(path, *args) -> bytes:
    """What ffmpeg itself reads from the file (its audio samples, its tags), to stdout."""
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    return subprocess.run([exe, "-v", "error", "-i", str(path), *args, "-"], capture_output=True, check=True).stdout


def test_pingpong_goes_back_to_frame_one(vae, latent, tmp_path, monkeypatch):
    seen = _piped(monkeypatch)
    out = decode_file.decode_to_file(vae, latent, tmp_path / "p.gif", fps=8, format="image/gif", pingpong=True)
    expected = _expected(vae, latent)
    order = list(range(9)) + list(range(7, 0, -1))
    np.testing.assert_array_equal(np.stack(seen), expected[order])
    assert len(_read(out)) == len(order)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gif"]  # the spool is gone


def test_cancel_mid_decode_leaves_nothing(vae, latent, tmp_path):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 4  # a few checks in: inside the decode of the first chunks

    with pytest.raises(Cancelled), cancel_hook(cancel):
        decode_file.decode_to_file(vae, latent, tmp_path / "c.mp4", fps=8, format="video/h264-mp4", pingpong=True)
    assert list(tmp_path.iterdir()) == []


def test_refusals_before_any_decode(vae, latent, tmp_path):
    with pytest.raises(WanInputError, match="one video latent"):
        decode_file.decode_to_file(vae, latent.expand(2, -1, -1, -1, -1), tmp_path / "x.mp4", fps=8,
                                   format="video/h264-mp4")
    with pytest.raises(WanInputError, match="cannot hold audio"):
        decode_file.decode_to_file(vae, latent, tmp_path / "x.gif", fps=8, format="image/gif",
                                   audio=(torch.zeros(1, 100), 8000))
    with pytest.raises(WanInputError, match="output folder does not exist"):
        decode_file.decode_to_file(vae, latent, tmp_path / "no" / "x.mp4", fps=8, format="video/h264-mp4")
    assert list(tmp_path.iterdir()) == []


def test_memory_check_counts_one_chunk_not_the_video(vae, monkeypatch):
    from wan.job import memory

    long = torch.empty(1, 16, 251, 60, 104, device="meta")  # 1001 frames of 832x480: 4.8 GB as float32
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**9)  # a 1 GB machine
    with pytest.raises(WanInputError, match="num_frames 1001 needs"):
        decode_frames(vae, long)  # the in-memory path holds every frame
    decode_file.check_stream_decode(vae, long.shape)  # the file path fits
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10**6)
    with pytest.raises(WanInputError, match="num_frames 1001 needs .* enable VAE tiling"):
        decode_file.check_stream_decode(vae, long.shape)


def test_node_writes_into_the_output_folder(vae, latent):
    node = refs.pack_module("nodes.video").WanDecodeToVideo
    folder_paths = refs.comfy("folder_paths")
    vae_module = refs.pack_module("wan.models.vae.wan21")
    pack_vae = vae_module.WanVAE(vae_module.VAEConfig(**TINY21.__dict__)).eval()
    pack_vae.load_state_dict(vae.state_dict())
    assert node.VALIDATE_INPUTS(frame_rate=16.0, filename_prefix="wan/dec", format="video/h264-mp4", crf=-1,
                                tile_size=64, tile_overlap=128).startswith("tile_overlap")
    result = node().decode(pack_vae, {"samples": torch.cat([latent, latent.flip(2)])}, 8.0, 0, "wan/dec",
                           "video/h264-mp4", False, True)
    paths = result["result"][0].split("\n")
    entries = result["ui"]["images"]
    assert len(paths) == 2 and [e["type"] for e in entries] == ["output", "output"]
    root = folder_paths.get_output_directory()
    for path, entry in zip(paths, entries):
        assert path.startswith(root) and path.endswith(entry["filename"]) and entry["subfolder"] == "wan"
        np.testing.assert_array_equal(_read(path).shape, (9, 32, 48, 3))
    assert paths[0] != paths[1]


def test_pipeline_write_is_the_pipeline_frames_in_a_file(files, tmp_path):
    pipe = T2VPipeline.from_files(dit=files / "t2v_1_3b.safetensors", text_encoder=files / "te.safetensors",
                                  vae=files / "vae.safetensors", dtype=torch.float32, device="cpu")
    job = dict(width=W, height=H, num_frames=5, steps=2, cfg=3.0, seed=7)
    out = pipe.write(tmp_path / "fox.webm", "a red fox", fps=8, **job)
    combine = write_video(tmp_path / "combine.webm", pipe("a red fox", **job), fps=8, format="video/webm")
    np.testing.assert_array_equal(_read(out), _read(combine))
    with pytest.raises(WanInputError, match="must end in"):  # refused before sampling
        pipe.write(tmp_path / "fox.avi", "a red fox", fps=8, **job)
    with pytest.raises(WanInputError, match="crf for video/webm"):
        pipe.write(tmp_path / "fox.webm", "a red fox", fps=8, crf=99, **job)
