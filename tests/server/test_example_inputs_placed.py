"""The server's input folder started empty; importing the pack placed the example images there,
so the bundled workflows that load them validate without a missing-image error."""

from __future__ import annotations

from pathlib import Path

from workflow_graphs import load_api

REPO = Path(__file__).resolve().parents[2]


def test_the_pack_placed_the_example_inputs(comfy_server):
    for src in (REPO / "workflows" / "inputs").glob("*.png"):
        assert (comfy_server.input_dir / src.name).read_bytes() == src.read_bytes()


def test_workflows_loading_images_pass_validation(comfy_server):
    info = comfy_server.object_info("LoadImage")
    listed = info["input"]["required"]["image"][0]
    for name in ("i2v", "vace_reference", "wan22_ti2v_5b"):
        for node in load_api(name).values():
            if node["class_type"] == "LoadImage":
                assert node["inputs"]["image"] in listed, f"{name}: {node['inputs']['image']} not offered"
