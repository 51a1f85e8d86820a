"""Values that arrive through a link skip VALIDATE_INPUTS (ComfyUI passes it widget values only):
each node's function refuses them with the message VALIDATE_INPUTS gives for the same widget
value, before any model work (the model stubs below fail the test if they are touched)."""

import importlib
import math
import re

import pytest

from refs import import_pack


@pytest.fixture(scope="module")
def nodes():
    pack = import_pack().__name__
    return {m: importlib.import_module(f"{pack}.nodes.{m}")
            for m in ("encoders", "sampler", "video", "vae", "options")}


@pytest.fixture(scope="module")
def WanInputError():
    return importlib.import_module(import_pack().__name__ + ".wan.errors").WanInputError


class Untouchable:
    """A model, VAE or image a node must not use: any attribute read fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"model work before the check: .{name} was read")


@pytest.mark.parametrize("values, message", [
    (dict(width=64, height=64, num_frames=1029), "num_frames must be between 1 and 1025, got 1029"),
    (dict(width=64, height=64, num_frames=6), "num_frames must be 1 + 4k (1, 5, 9, ..., 81), got 6"),
    (dict(width=100000, height=64, num_frames=5), "width must be between 16 and 8192, got 100000"),
    (dict(width=40, height=64, num_frames=5), "width must be a multiple of 16, got 40"),
    (dict(width=64, height=64.5, num_frames=5), "height must be a whole number from 16 to 8192, got 64.5"),
])
def test_size_inputs(nodes, WanInputError, values, message):
    enc = nodes["encoders"]
    for cls in (enc.WanEmptyEmbeds, enc.WanImageToVideoEncode, enc.WanVACEEncode):
        assert cls.VALIDATE_INPUTS(**values) == message  # the widget value
    with pytest.raises(WanInputError) as e:
        enc.WanEmptyEmbeds().make(**values)  # the same value through a link
    assert str(e.value) == message
    with pytest.raises(WanInputError, match=re.escape(message)):
        enc.WanImageToVideoEncode().encode(Untouchable(), start_image=Untouchable(), noise_aug_strength=0.0, **values)
    with pytest.raises(WanInputError, match=re.escape(message)):
        enc.WanVACEEncode().encode(Untouchable(), strength=1.0, **values)


class FakeModel(Untouchable):
    """What a loaded WANMODEL looks like to the sampler; reading anything fails the test."""


SAMPLER = dict(steps=4, cfg=5.0, shift=5.0, seed=0, sampler="euler", denoise_strength=1.0)


@pytest.mark.parametrize("change, message", [
    (dict(steps=10**9), "steps must be between 1 and 10000, got 1000000000"),
    (dict(steps=1e9), "steps must be a whole number from 1 to 10000"),
    (dict(steps=0), "steps must be between 1 and 10000, got 0"),
    (dict(seed=-5), "seed must be between 0 and 18446744073709551615, got -5"),
    (dict(seed=2 ** 64), "seed must be between 0"),
])
def test_sampler_counts(nodes, WanInputError, change, message):
    node = nodes["sampler"].WanSampler()
    values = {**SAMPLER, **change}
    with pytest.raises(WanInputError, match=re.escape(message)):  # ComfyUI asks which lazy inputs to make first
        node.check_lazy_status(**values, model=None, text_embeds=None, image_embeds=None)
    with pytest.raises(WanInputError, match=re.escape(message)):
        node.sample(FakeModel(), Untouchable(), Untouchable(), **values)


def test_sampler_steps_widget_range_matches_the_rule(nodes):
    steps = nodes["sampler"].WanSampler.INPUT_TYPES()["required"]["steps"][1]
    assert (steps["min"], steps["max"]) == (1, 10000)


@pytest.mark.parametrize("change, message", [
    (dict(frame_rate=240.5), "frame_rate must be from 0.01 to 240"),
    (dict(frame_rate=1e9), "frame_rate must be from 0.01 to 240"),
    (dict(frame_rate=1e-9), "frame_rate must be from 0.01 to 240"),
    (dict(frame_rate=math.nan), "frame_rate must be from 0.01 to 240"),
    (dict(crf=52), "crf for video/h264-mp4 must be an integer in 0..51, got 52"),
    (dict(crf=64), "crf must be between -1 and 63, got 64"),
    (dict(format="video/h265-mp4", crf=60), "crf for video/h265-mp4 must be an integer in 0..51, got 60"),
    (dict(filename_prefix="../x"), "filename_prefix"),
    (dict(filename_prefix="x" * 300), "filename_prefix"),
])
def test_video_combine(nodes, WanInputError, change, message):
    node = nodes["video"].WanVideoCombine
    values = {**dict(frame_rate=16.0, filename_prefix="Wan", format="video/h264-mp4", crf=-1), **change}
    widget = node.VALIDATE_INPUTS(**values)
    assert isinstance(widget, str) and message in widget
    with pytest.raises(WanInputError) as e:  # linked: refused before a frame is read
        node().combine(Untouchable(), loop_count=0, pingpong=False, save_output=False, **values)
    assert str(e.value) == widget


def test_video_combine_accepts_good_values(nodes):
    check = nodes["video"].WanVideoCombine.VALIDATE_INPUTS
    assert check(frame_rate=240.0, filename_prefix="a/b", format="video/webm", crf=63) is True
    assert check(frame_rate=16.0, filename_prefix="a", format="image/gif", crf=52) is True  # gif has no crf
    assert check(frame_rate=None, filename_prefix=None, format="video/h264-mp4", crf=None) is True  # linked


def test_context_windows_in_pixel_frames(nodes, WanInputError):
    node = nodes["options"].WanContextOptions
    # 4 frames overlapping by 3 are both one latent frame: refused in the frames the user typed
    message = node.VALIDATE_INPUTS(context_frames=4, context_overlap=3)
    assert isinstance(message, str) and message.startswith("context_overlap (3)") and "context_frames (4)" in message
    assert "context_length" not in message
    assert node.VALIDATE_INPUTS(context_frames=5, context_overlap=3) is True
    with pytest.raises(WanInputError) as e:
        node().make("static_standard", 4, 4, 3, "pyramid")
    assert str(e.value) == message
    with pytest.raises(WanInputError, match="context_stride must be between 4 and 100, got 1000"):
        node().make("static_standard", 81, 1000, 16, "pyramid")


def test_vae_tiles(nodes, WanInputError):
    node = nodes["vae"].WanVAEDecode
    assert node.VALIDATE_INPUTS(tile_size=256, tile_overlap=256) == "tile_overlap (256) must be smaller than tile_size (256)"
    with pytest.raises(WanInputError, match=r"^tile_size must be between 64 and 4096, got 100000$"):
        node().decode(Untouchable(), Untouchable(), True, 100000, 64)


def test_one_message_per_refusal(nodes):
    # several problems at once: one message, the first, never a list of them
    message = nodes["encoders"].WanEmptyEmbeds.VALIDATE_INPUTS(width=8, height=100000, num_frames=6)
    assert message == "width must be between 16 and 8192, got 8"
