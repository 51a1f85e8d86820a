"""``--dequant-cache`` reaches LoadOptions; an unknown mode is refused by the parser."""

import argparse

import pytest

from wan.cli.generate import _options, add_arguments

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
