"""The model-file catalogue: schema, consistency with ComfyUI's folders and the bundled workflows."""

import copy
import json

import pytest

from wan.install import catalog as cat
from wan.errors import WanFileError, WanInputError

WORKFLOWS = {"t2v", "i2v", "vace_reference", "t2v_long_context", "wan22_t2v_a14b", "wan22_ti2v_5b",
             "t2i_wan", "t2v_vace_lora_reference", "wan22_i2v_a14b", "wan22_i2v_a14b_lightning",
             "wan22_t2v_a14b_lightning", "flf2v", "wan22_flf2v", "native_bonfire_vace", "native_wan22_i2v_a14b",
             "wan22_animate", "fun_control", "fun_inpaint", "fun_camera", "phantom", "ati", "wan22_s2v", "humo"}
# Which ComfyUI folder each role's files go in (GGUF DiTs go to "unet", as ComfyUI-GGUF documents).
FOLDER_OF = {("dit", "safetensors"): "diffusion_models", ("dit", "gguf"): "unet",
             ("text_encoder", "safetensors"): "text_encoders", ("clip_vision", "safetensors"): "clip_vision",
             ("vae", "safetensors"): "vae", ("lora", "safetensors"): "loras",
             ("audio_encoder", "safetensors"): "audio_encoders"}


@pytest.fixture(scope="module")
def raw():
    with open(cat.DEFAULT_PATH, encoding="utf-8") as fh:
        return json.load(fh)


def test_shipped_catalogue_is_valid(raw):
    assert cat.validate(raw) == []
    c = cat.load_catalog()
    assert set(c.workflows) == WORKFLOWS
    for f in c.files:
        assert FOLDER_OF[(f.role, f.format)] == f.folder, f.name
        assert f.local_path("/x").endswith(f"models/{f.folder}/{f.filename}")


def test_default_set_is_the_small_t2v_job():
    c = cat.load_catalog()
    picked = c.resolve(["default"])
    assert [(f.role, f.variant) for f in picked] == [("dit", "t2v_1_3b"), ("text_encoder", "umt5_xxl"), ("vae", "wan21")]
    assert picked[0].repo == "Comfy-Org/Wan_2.1_ComfyUI_repackaged"


def test_each_workflow_has_a_dit_text_encoder_and_vae():
    c = cat.load_catalog()
    for wf in c.workflows.values():
        roles = {c.file(n).role for n in wf.slots.values()}
        assert {"dit", "text_encoder", "vae"} <= roles, wf.name
    assert c.file("Wan2.1_14B_VACE-Q3_K_S.gguf").repo == "QuantStack/Wan2.1_14B_VACE-GGUF"
    assert [f.variant for f in c.alternatives("wan22_t2v_a14b", "dit_high")] == ["wan22_t2v_a14b_high"]
    assert c.file("wan2.2_vae").workflows == {"wan22_ti2v_5b": "vae"}


def test_lookup_and_resolve():
    c = cat.load_catalog()
    assert c.file("WAN_2.1_VAE.safetensors").name == "wan_2.1_vae"
    both = c.resolve(["t2v", "wan_2.1_vae", "i2v"])
    assert [f.name for f in both].count("wan_2.1_vae") == 1
    assert "clip_vision_h" in [f.name for f in both]
    with pytest.raises(WanInputError, match="no model file named 'nope'"):
        c.file("nope")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["files"][0].update(role="unet"), "role 'unet'"),
    (lambda d: d["files"][0].update(sha256="ABC"), "sha256 must be"),
    (lambda d: d["files"][0].update(size=-3), "size must be"),
    (lambda d: d["files"][0].update(folder="models"), "folder 'models'"),
    (lambda d: d["files"][0].update(filename="x.gguf"), "does not end in .safetensors"),
    (lambda d: d["files"][0].update(path="../../etc/x.safetensors", filename="x.safetensors"), "stay inside"),
    (lambda d: d["files"][0]["workflows"].update(t2v="lora"), "has no slot 'lora'"),
    (lambda d: d["files"][0]["workflows"].update(nope="dit"), "unknown workflow 'nope'"),
    (lambda d: d["files"].append(copy.deepcopy(d["files"][0])), "name used twice"),
    (lambda d: d["workflows"]["t2v"]["slots"].update(dit="missing_file"), "not a catalogued file"),
    (lambda d: d["files"][0].update(extra=1), "unknown keys"),
    (lambda d: d.update(default="nope"), "default 'nope'"),
])
def test_validate_catches(raw, edit, message, tmp_path):
    broken = copy.deepcopy(raw)
    edit(broken)
    assert any(message in p for p in cat.validate(broken)), cat.validate(broken)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(WanFileError, match="invalid catalogue"):
        cat.load_catalog(path)


# The Wan 2.2 A14B graphs of issue 17 (the ones ComfyUI users run most): every file they download is
# pinned by its published byte size and sha256, so a truncated or swapped download is caught.
@pytest.mark.parametrize("workflow", ["wan22_i2v_a14b", "wan22_i2v_a14b_lightning", "flf2v",
                                      "wan22_t2v_a14b_lightning", "wan22_flf2v"])
def test_2026_graphs_pin_size_and_sha256(workflow):
    c = cat.load_catalog()
    files = [f for f in c.files if workflow in f.workflows]
    assert files
    for f in files:
        assert f.size and f.sha256 and f.checksum_source, f.name
    # The two experts of a Wan 2.2 pair have the same layout, so the same size, but different bytes.
    experts = [f for f in files if f.role == "dit"]
    if len(experts) == 2:
        assert len({f.size for f in experts}) == 1 and len({f.sha256 for f in experts}) == 2
