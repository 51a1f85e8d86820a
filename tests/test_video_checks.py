"""wan/video_checks.py: the frame rate's widget range and a filename prefix's limits, each refusal
naming the input (the cases an outside audit found: 234 characters or 60 emoji failed with "File name
too long", a 3000-character nesting recursed, 1e9 fps wrote a 0.00 s clip, 1e-9 reached ffmpeg)."""

import pytest

from wan.video_checks import fps_problem, prefix_problem

NAME_MAX = 255  # bytes in one file name on Linux / macOS
# ComfyUI's counter "_00001_" and the writer's temporary ".{stem}.{8 hex}.part" join the prefix
OVERHEAD = len("_00001_") + len("..abcdef12.part")


@pytest.mark.parametrize("fps", [240.5, 1e9, 1e-9, float("nan"), float("inf"), -24, 0, "fast", None])
def test_frame_rates_outside_the_widget_refused(fps):
    problem = fps_problem(fps)
    assert problem is not None and problem.startswith("frame_rate must be")


@pytest.mark.parametrize("fps", [24, 8.0, 0.01, 240, 29.97])
def test_frame_rates_inside_pass(fps):
    assert fps_problem(fps) is None


@pytest.mark.parametrize("prefix", [
    "a" * 234,  # fits 255 alone, not with the counter and the temporary name
    "\U0001F600" * 60,  # 60 characters but 240 bytes as UTF-8
    "a/" * 1500,  # 3000 characters of nesting
    "video/" + "b" * (NAME_MAX - OVERHEAD + 1),
    "c" * 256 + "/video",  # a folder name over 255 bytes
])
def test_long_or_deep_prefixes_refused_by_name(prefix):
    problem = prefix_problem(prefix)
    assert problem is not None and problem.startswith("filename_prefix")


def test_the_longest_file_name_that_fits_passes():
    assert prefix_problem("a" * (NAME_MAX - OVERHEAD)) is None
    assert prefix_problem("\U0001F600" * ((NAME_MAX - OVERHEAD) // 4)) is None


@pytest.mark.parametrize("prefix", ["ComfyUI", "WanVideo", "wan/run 1/clip", "vidéo_été"])
def test_normal_prefixes_pass(prefix):
    assert prefix_problem(prefix) is None


def test_a_long_folder_name_that_a_later_dotdot_steps_out_of_is_still_refused():
    # the saver creates every folder as written (a/<300 x>/..): the long name fails there
    problem = prefix_problem("a/" + "x" * 300 + "/..\\..")
    assert problem and "folder name of 300 bytes" in problem
