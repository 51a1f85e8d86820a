"""wan/video.py: files decoded back by independent readers (ffmpeg's decoders through imageio-ffmpeg,
Pillow for gif/webp tags, ffmpeg's ffmetadata dump for container tags) must match what went in."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import replace

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from wan import video
from wan.errors import WanInputError

ALL = list(video.FORMATS)
VIDEO = [f for f in ALL if f.startswith("video/")]
# Flat grey frames survive every codec (gif palette, yuv420p) within a few levels.
LEVEL_TOLERANCE = 4.0


def _levels(n: int) -> list[int]:
    return [20 + 30 * i for i in range(n)]


def _flat_frames(n: int, height: int = 24, width: int = 32) -> torch.Tensor:
    """[n, H, W, 3] float frames, frame i a flat grey of level _levels(n)[i] / 255."""
    levels = torch.tensor(_levels(n), dtype=torch.float32) / 255.0
    return levels[:, None, None, None].expand(n, height, width, 3).contiguous()


def _decode(path):
    """(frames [N, H, W, 3] uint8, reader metadata) from ffmpeg's own decoder."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(buf, np.uint8).reshape(height, width, 3) for buf in reader]
    return np.stack(frames), meta


def _tags(path) -> dict[str, str]:
    """Container-level tags as ffmpeg reads them (ffmetadata escapes = ; # \\ and newlines)."""
    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True, check=True,
    ).stdout.decode("utf-8")
    tags, key, value, escaped = {}, None, [], False
    for line in out.splitlines(keepends=True)[1:]:
        if key is None:
            key, _, rest = line.partition("=")
            line = rest
        for ch in line:
            if escaped:
                value.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == "\n":
                tags[key] = "".join(value)
                key, value = None, []
            else:
                value.append(ch)
        if escaped:  # an escaped newline continues the value on the next line
            continue
    return tags


def _write(tmp_path, fmt, frames, name="clip", **kwargs):
    kwargs.setdefault("fps", 10)
    return video.write_video(tmp_path / f"{name}.{video.extension(fmt)}", frames, format=fmt, **kwargs)


@pytest.mark.parametrize("fmt", ALL)
def test_round_trip_frames_size_rate(tmp_path, fmt):
    path = _write(tmp_path, fmt, _flat_frames(5), fps=10)
    frames, meta = _decode(path)
    assert frames.shape == (5, 24, 32, 3)
    assert meta["fps"] == pytest.approx(10, abs=0.01)
    means = frames.reshape(5, -1).mean(axis=1)
    assert np.abs(means - _levels(5)).max() <= LEVEL_TOLERANCE, means
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 5
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def _frame_times(path) -> list[float]:
    """Presentation times of every decoded frame, from ffmpeg's showinfo filter (6 decimals)."""
    err = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path), "-vf", "showinfo", "-f", "null", "-"],
        capture_output=True, check=True,
    ).stderr.decode()
    return [float(m) for m in re.findall(r"pts_time:\s*([0-9.]+)", err)]


# mp4 keeps the exact rational rate; Matroska/WebM stores millisecond timestamps.
@pytest.mark.parametrize("fmt, tolerance", [("video/h264-mp4", 2e-6), ("video/webm", 1e-3)])
def test_fractional_frame_rate(tmp_path, fmt, tolerance):
    # imageio's reported fps is rounded to 0.01, too coarse to tell 24000/1001 from 23.98.
    path = _write(tmp_path, fmt, _flat_frames(4), fps=24000 / 1001)
    times = _frame_times(path)
    assert len(times) == 4
    assert times[3] - times[0] == pytest.approx(3 * 1001 / 24000, abs=tolerance)


@pytest.mark.parametrize("fmt", ["image/gif", "video/h264-mp4"])
def test_pingpong_plays_back_without_doubling_the_ends(tmp_path, fmt):
    path = _write(tmp_path, fmt, _flat_frames(4), pingpong=True)
    frames, _ = _decode(path)
    assert frames.shape[0] == 2 * 4 - 2
    expected = [_levels(4)[i] for i in (0, 1, 2, 3, 2, 1)]
    assert np.abs(frames.reshape(6, -1).mean(axis=1) - expected).max() <= LEVEL_TOLERANCE


@pytest.mark.parametrize("fmt", ALL)
def test_odd_size_padded_only_where_the_codec_needs_it(tmp_path, fmt, caplog):
    with caplog.at_level(logging.WARNING, logger="wan.video"):
        path = _write(tmp_path, fmt, _flat_frames(2, height=25, width=33))
    frames, _ = _decode(path)
    needs_even = video.FORMATS[fmt].even_size
    assert frames.shape[1:3] == ((26, 34) if needs_even else (25, 33))
    assert ("padded to 34x26" in caplog.text) == needs_even
    # The picture itself is untouched: the top-left 25x33 block keeps the frame's level.
    assert abs(frames[0, :25, :33].mean() - _levels(2)[0]) <= LEVEL_TOLERANCE


@pytest.mark.parametrize("fmt", ["image/gif", "image/webp"])
@pytest.mark.parametrize("loops", [0, 3])
def test_loop_count(tmp_path, fmt, loops):
    path = _write(tmp_path, fmt, _flat_frames(2), loop_count=loops)
    with Image.open(path) as im:
        assert im.info["loop"] == loops
        assert im.n_frames == 2


def test_inputs_of_every_kind_encode_identically(tmp_path):
    frames = _flat_frames(3)
    as_uint8 = (frames * 255).round().to(torch.uint8).numpy()
    outputs = [
        _write(tmp_path, "image/gif", frames, name="tensor"),
        _write(tmp_path, "image/gif", as_uint8, name="uint8"),
        _write(tmp_path, "image/gif", [f for f in frames.half()], name="list"),
        _write(tmp_path, "image/gif", (f for f in frames.numpy()), name="generator"),
        _write(tmp_path, "image/gif", torch.cat([frames, torch.zeros(3, 24, 32, 1)], dim=-1), name="rgba"),
    ]
    reference = _decode(outputs[0])[0]
    for path in outputs[1:]:
        np.testing.assert_array_equal(_decode(path)[0], reference, err_msg=path.name)


def _sine(seconds: float, rate: int, hz: float, channels: int = 2) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return (0.5 * torch.sin(2 * torch.pi * hz * t)).expand(channels, -1).contiguous()


def _decode_audio(path, rate: int) -> np.ndarray:
    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0",
         "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, np.float32)


@pytest.mark.parametrize("fmt", VIDEO)
def test_audio_is_muxed_and_trimmed_to_the_clip(tmp_path, fmt):
    rate = 16000
    # 3 s of 440 Hz under a 1 s clip (10 frames at 10 fps): the file must stay 1 s long.
    path = _write(tmp_path, fmt, _flat_frames(10), audio=(_sine(3.0, rate, 440.0), rate))
    _, meta = _decode(path)
    assert meta["audio_codec"].startswith(video.FORMATS[fmt].audio_codec[1].removeprefix("lib"))
    samples = _decode_audio(path, rate)
    # Encoder priming/padding adds at most a few tens of milliseconds.
    assert abs(len(samples) / rate - 1.0) < 0.08, len(samples) / rate
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * rate / len(samples)
    assert abs(peak_hz - 440.0) < 5.0, peak_hz


def test_audio_refused_by_image_formats(tmp_path):
    with pytest.raises(WanInputError, match="cannot hold audio"):
        _write(tmp_path, "image/gif", _flat_frames(2), audio=(_sine(1, 8000, 440), 8000))
    assert list(tmp_path.iterdir()) == []


METADATA = {"prompt": {"3": {"class_type": "KSampler", "inputs": {"text": "a=b; #c\\d\nnew"}}},
            "workflow": {"nodes": [{"id": 1, "title": "ünïcode"}], "links": []}}


@pytest.mark.parametrize("fmt", VIDEO)
def test_metadata_in_container_tags(tmp_path, fmt):
    path = _write(tmp_path, fmt, _flat_frames(2), metadata=METADATA)
    tags = {k.lower(): v for k, v in _tags(path).items()}
    assert json.loads(tags["prompt"]) == METADATA["prompt"]
    assert json.loads(tags["workflow"]) == METADATA["workflow"]


def test_metadata_in_webp_exif_as_comfyui_writes_it(tmp_path):
    path = _write(tmp_path, "image/webp", _flat_frames(3), metadata=METADATA)
    with Image.open(path) as im:
        assert im.n_frames == 3
        exif = im.getexif()
    key, _, value = exif[0x0110].partition(":")
    assert key == "prompt" and json.loads(value) == METADATA["prompt"]
    key, _, value = exif[0x010F].partition(":")
    assert key == "workflow" and json.loads(value) == METADATA["workflow"]
    assert _decode(path)[0].shape[0] == 3  # the added chunk leaves the animation readable


def test_metadata_in_gif_comment(tmp_path):
    path = _write(tmp_path, "image/gif", _flat_frames(3), metadata=METADATA, loop_count=2)
    with Image.open(path) as im:
        assert json.loads(im.info["comment"]) == METADATA
        assert im.info["loop"] == 2
        assert im.n_frames == 3


@pytest.mark.parametrize(
    "frames, kwargs, message",
    [
        (torch.zeros(0, 24, 32, 3), {}, "empty"),
        ([], {}, "empty"),
        (_flat_frames(2), {"fps": 0}, "frame_rate must be from 0.01 to 240"),
        (_flat_frames(2), {"fps": -1}, "frame_rate must be from 0.01 to 240"),
        (_flat_frames(2), {"fps": float("nan")}, "frame_rate must be"),
        (_flat_frames(2), {"format": "video/avi"}, "unknown video format 'video/avi'"),
        (torch.zeros(2, 24, 32), {}, r"\[N, H, W, C\]"),
        (torch.zeros(2, 24, 32, 1), {}, r"frame 0 must be \[H, W, 3\]"),
        (torch.zeros(2, 24, 32, 3, dtype=torch.int64), {}, "float .0..1. or uint8, got torch.int64"),
        ([np.zeros((24, 32, 3), np.uint8), np.zeros((24, 30, 3), np.uint8)], {}, "frame 1 is 30x24"),
        (_flat_frames(2), {"crf": 99}, r"crf for video/h264-mp4 must be an integer in 0..51"),
        (_flat_frames(2), {"loop_count": -1}, "loop_count"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(tmp_path, frames, kwargs, message):
    kwargs = {"format": "video/h264-mp4", "fps": 10, **kwargs}
    with pytest.raises(WanInputError, match=message):
        video.write_video(tmp_path / "clip.mp4", frames, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_interrupt_mid_encode_leaves_no_file(tmp_path):
    def stop(position, total):
        assert total == 5
        if position == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, "video/webm", _flat_frames(5), on_frame=stop)
    assert list(tmp_path.iterdir()) == []


def test_ffmpeg_failure_names_ffmpeg_and_leaves_no_file(tmp_path, monkeypatch):
    broken = replace(video.FORMATS["video/webm"], codec_args=("-c:v", "no_such_encoder"))
    monkeypatch.setitem(video.FORMATS, "video/webm", broken)
    with pytest.raises(RuntimeError, match="ffmpeg failed .*no_such_encoder"):
        _write(tmp_path, "video/webm", _flat_frames(3), audio=(_sine(1, 8000, 440), 8000))
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_only_on_success(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    with pytest.raises(WanInputError):
        video.write_video(target, torch.zeros(2, 24, 32, 1), fps=10, format="video/h264-mp4")
    assert target.read_bytes() == b"old"
    video.write_video(target, _flat_frames(2), fps=10, format="video/h264-mp4")
    assert _decode(target)[0].shape[0] == 2


@pytest.mark.parametrize("fmt", ["video/h264-mp4", "video/webm"])
def test_metadata_of_a_big_graph_goes_in_whole(tmp_path, fmt):
    """A big graph's workflow (here ~300 kB, with '=', ';', '#', backslashes and newlines in its
    strings) used to go on ffmpeg's command line and fail with "Argument list too long"."""
    nodes = [{"id": i, "type": "Note", "widgets_values": [f"line {i}\nkey=value; #{i} back\\slash " * 20]}
             for i in range(600)]
    metadata = {"prompt": METADATA["prompt"], "workflow": {"nodes": nodes}}
    assert len(json.dumps(metadata["workflow"])) > 250_000
    path = _write(tmp_path, fmt, _flat_frames(2), metadata=metadata)
    tags = {k.lower(): v for k, v in _tags(path).items()}
    assert json.loads(tags["workflow"]) == metadata["workflow"]
    assert json.loads(tags["prompt"]) == METADATA["prompt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no metadata file left behind
