"""The bundled workflow files, without a server: both twins present, model names from the catalogue
(so `python -m wan models verify` matches them), and the README table lists every workflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
LOADER_FILE_INPUTS = {  # node type -> (input, catalogue role)
    "WanModelLoader": ("model", "dit"),
    "WanTextEncoderLoader": ("text_encoder", "text_encoder"),
    "WanVAELoader": ("vae", "vae"),
    "WanCLIPVisionLoader": ("clip_vision", "clip_vision"),
    "WanLoraSelect": ("lora", "lora"),
    "WanAudioEncoderLoader": ("audio_encoder_name", "audio_encoder"),
    # ComfyUI's own loaders and ours for native graphs
    "WanDiffusionModelLoader": ("unet_name", "dit"),
    "UNETLoader": ("unet_name", "dit"),
    "CLIPLoader": ("clip_name", "text_encoder"),
    "WanUMT5Loader": ("clip_name", "text_encoder"),
    "VAELoader": ("vae_name", "vae"),
    "LoraLoader": ("lora_name", "lora"),
    "LoraLoaderModelOnly": ("lora_name", "lora"),
}
NAMES = sorted(p.name[: -len(".api.json")] for p in WORKFLOWS.glob("*.api.json") if "video_combine_demo" not in p.name)


def test_expected_workflows_exist():
    assert set(NAMES) >= {"t2v", "i2v", "vace_reference", "t2v_long_context", "wan22_t2v_a14b", "wan22_ti2v_5b",
                          "t2i_wan", "t2i_sd15", "t2v_vace_lora_reference"}
    for name in NAMES:
        assert (WORKFLOWS / f"{name}.json").exists(), name


@pytest.mark.parametrize("name", NAMES)
def test_model_files_are_the_catalogues(name):
    catalog = json.loads((REPO / "wan" / "install" / "catalog.json").read_text())
    files = {f["filename"]: f for f in catalog["files"]}
    api = json.loads((WORKFLOWS / f"{name}.api.json").read_text())
    used = []
    for node in api.values():
        if node["class_type"] in LOADER_FILE_INPUTS:
            key, role = LOADER_FILE_INPUTS[node["class_type"]]
            filename = node["inputs"][key]
            assert filename in files, f"{name}: {filename} is not in wan/install/catalog.json"
            assert files[filename]["role"] == role, (name, filename)
            if name in catalog["workflows"]:
                assert name in files[filename]["workflows"], f"{filename} is not listed for workflow {name}"
            used.append(filename)
    if name in catalog["workflows"]:  # every slot of the catalogue's workflow is filled
        assert len(used) == len(catalog["workflows"][name]["slots"]), (name, used)


def test_readme_lists_every_workflow():
    readme = (WORKFLOWS / "README.md").read_text()
    for name in NAMES:
        assert f"| `{name}` |" in readme, name
