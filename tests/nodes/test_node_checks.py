"""VALIDATE_INPUTS of the window-shaped nodes (VAE tiles, context windows) and the size inputs: ComfyUI
skips its own min/max check for the inputs a VALIDATE_INPUTS names, so each range is checked here."""

import importlib

import pytest

from refs import import_pack


@pytest.fixture(scope="module")
def nodes():
    pack = import_pack().__name__
    return {m: importlib.import_module(f"{pack}.nodes.{m}") for m in ("vae", "options", "encoders")}


def test_tile_checks(nodes):
    check = nodes["vae"].WanVAEDecode.VALIDATE_INPUTS
    assert check(tile_size=256, tile_overlap=64) is True
    assert check(tile_size=32, tile_overlap=8) == "tile_size must be between 64 and 4096, got 32"
    assert check(tile_size=256, tile_overlap=2049) == "tile_overlap must be between 0 and 2048, got 2049"
    assert check(tile_size=256, tile_overlap=256) == "tile_overlap (256) must be smaller than tile_size (256)"


def test_context_window_checks(nodes):
    check = nodes["options"].WanContextOptions.VALIDATE_INPUTS
    assert check(context_frames=81, context_overlap=16) is True
    assert check(context_frames=0, context_overlap=0) == "context_frames must be between 1 and 1001, got 0"
    assert check(context_frames=81, context_overlap=81) == "context_overlap (81) must be smaller than context_frames (81)"


def test_size_checks(nodes):
    check = nodes["encoders"].WanEmptyEmbeds.VALIDATE_INPUTS
    assert check(width=64, height=64, num_frames=5) is True
    assert check(width=8, height=64, num_frames=5) == "width must be between 16 and 8192, got 8"
    assert check(width=64, height=64, num_frames=0) == "num_frames must be between 1 and 1025, got 0"
    assert check(width=64, height=64, num_frames=6).startswith("num_frames must be 1 + 4k")
