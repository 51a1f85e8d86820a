"""The example input images of the bundled workflows: every image a bundled workflow loads ships in
workflows/inputs/, and the pack copies missing ones into ComfyUI's input folder without replacing a
user's file (nodes/_examples.py, run in process as ComfyUI imports the pack)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from refs import import_pack

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "workflows" / "inputs"


@pytest.fixture(scope="module")
def examples():
    return sys.modules[import_pack().__name__ + ".nodes._examples"]


def _loaded_images() -> set[str]:
    names = set()
    for path in (REPO / "workflows").glob("*.api.json"):
        for node in json.loads(path.read_text()).values():
            if node["class_type"] == "LoadImage":
                names.add(node["inputs"]["image"])
            if node["class_type"] in ("LoadAudio", "WanLoadAudio"):
                names.add(node["inputs"]["audio"])
    return names


def test_every_loaded_image_ships():
    assert _loaded_images() and _loaded_images() <= {p.name for p in INPUTS.iterdir()}


def test_missing_examples_are_copied_whole(examples, tmp_path):
    placed = examples.place_example_inputs(tmp_path / "input")
    assert sorted(placed) == sorted(p.name for p in INPUTS.iterdir() if p.suffix in (".png", ".wav"))
    for name in placed:
        assert (tmp_path / "input" / name).read_bytes() == (INPUTS / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == sorted(placed)  # no .part left
    assert examples.place_example_inputs(tmp_path / "input") == []


def test_a_users_file_is_never_replaced(examples, tmp_path):
    (tmp_path / "bonfire.png").write_bytes(b"the user's own picture")
    placed = examples.place_example_inputs(tmp_path)
    assert "bonfire.png" not in placed and (tmp_path / "bonfire.png").read_bytes() == b"the user's own picture"


def test_an_unwritable_input_folder_is_logged_not_raised(examples, tmp_path, caplog):
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING):
        assert examples.place_example_inputs(blocked) == []
    assert "could not place the example input" in caplog.text
