"""``python -m wan generate``'s expert and guidance flags: parsed into the library's options, and
bad values refused before any model loads (the model paths here do not exist, so a message about a
file would mean loading had started)."""

import argparse

import pytest

from wan.cli import main
from wan.cli.generate import add_arguments, guidance_options
from wan.sampling.cfg_zero import CFGZeroStar
from wan.sampling.guidance import GuidanceOptions
from wan.sampling.nag import NAGOptions
from wan.sampling.slg import SkipLayerGuidance

BASE = ["generate", "--dit", "/nonexistent/high.safetensors", "--dit-low", "/nonexistent/low.safetensors",
        "--text-encoder", "/nonexistent/te.safetensors", "--vae", "/nonexistent/vae.safetensors",
        "--prompt", "a fox", "--steps", "4", "--out", "/nonexistent/out.mp4", "--quiet"]


def parse(*extra):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([*BASE[1:], *extra])


def test_flags_become_guidance_options():
    args = parse("--cfg", "2,1,1,1", "--cfg-zero-star", "--slg", "7,9", "--slg-scale", "2", "--nag", "5",
                 "--nag-tau", "3", "--switch-step", "2")
    assert args.cfg == (2.0, 1.0, 1.0, 1.0) and args.switch_step == 2
    assert guidance_options(args) == GuidanceOptions(CFGZeroStar(0), SkipLayerGuidance((7, 9), 2.0), NAGOptions(5.0, 3.0))
    assert parse("--cfg-zero-star", "2").cfg_zero_star == 2
    assert parse("--cfg", "3.5").cfg == 3.5 and guidance_options(parse()) is None


@pytest.mark.parametrize("extra,words", [
    (["--switch-step", "4"], "switch_step must be a step index in 1..3"),
    (["--switch-step", "2", "--boundary", "0.9"], "not both"),
    (["--boundary", "1.2"], "(0, 1)"),
    (["--cfg", "2,1,1"], "3 values for a run of 4 steps"),
    (["--shift-low", "0"], "shift_low must be > 0"),
    (["--slg", "1", "--slg-start", "2"], "percents"),
    (["--nag", "3", "--nag-alpha", "2"], "alpha"),
])
def test_bad_values_are_refused_before_loading(extra, words, capsys):
    assert main([*BASE, *extra]) == 1
    err = capsys.readouterr().err
    assert words in err and "nonexistent" not in err
