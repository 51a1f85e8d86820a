"""``--dequant-cache`` reaches LoadOptions and ``--sdpa-edge-steps`` RunOptions; an unknown mode or a
negative count is refused before any model loads."""

import argparse

import pytest

from wan.cli.generate import _options, add_arguments
from wan.errors import WanInputError

BASE = ["--dit", "/nonexistent/dit.gguf", "--text-encoder", "/nonexistent/te.safetensors", "--vae",
        "/nonexistent/vae.safetensors", "--prompt", "a fox", "--out", "/nonexistent/out.mp4", "--quiet"]


def parse(*extra):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([*BASE, *extra])


@pytest.mark.parametrize("flag, mode", [((), "off"), (("--dequant-cache", "auto"), "auto"),
                                        (("--dequant-cache", "on"), "on")])
def test_flag_becomes_the_load_option(flag, mode):
    load, _ = _options(parse(*flag))
    assert load.dequant_cache == mode


def test_unknown_mode_is_refused():
    with pytest.raises(SystemExit):
        parse("--dequant-cache", "always")


def test_sdpa_edge_steps_reach_the_run_options():
    _, run = _options(parse("--sdpa-edge-steps", "1"))
    assert run.sdpa_edge_steps == 1
    assert _options(parse())[1].sdpa_edge_steps == 0
    with pytest.raises(WanInputError, match="sdpa_edge_steps"):
        _options(parse("--sdpa-edge-steps", "-2"))
