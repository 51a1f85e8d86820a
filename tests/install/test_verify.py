"""`models verify` on a ComfyUI folder holding present, missing, truncated and misnamed files.

Full-size Wan DiT key names and shapes come from ComfyUI's own WanModel / VaceWanModel built on the
meta device; those files are written sparse (a real header, a data section of holes), so they cost no
disk and are read, like every file here, for their header only. The VAE (ComfyUI's WanVAE), the
UMT5 encoder (transformers' UMT5EncoderModel) and a GGUF (gguf-py's GGUFWriter) are tiny real files.
"""

import json

import pytest

from dit_headers import comfy_dit_shapes, write_sparse_gguf, write_sparse_safetensors
from refs import comfy
from wan.install import verify as vf
from wan.install.catalog import DEFAULT_PATH, load_catalog
from wan.models.dit.config import DIT_PRESETS
from wan.models.identify import identify
from wan.cli import main


T2V_1_3B = DIT_PRESETS["t2v_1_3b"]
VACE_14B = DIT_PRESETS["vace_14b"]  # the released VACE 14B: 8 VACE blocks


def tiny_vae(path):
    from safetensors.torch import save_file

    vae = comfy("comfy.ldm.wan.vae").WanVAE(dim=8, z_dim=16, dim_mult=[1, 2], num_res_blocks=1,
                                             attn_scales=[], temperal_downsample=[True])
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(path))


def tiny_umt5(path):
    from safetensors.torch import save_file
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4)
    sd = {k: v.clone() for k, v in UMT5EncoderModel(cfg).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    """A ComfyUI folder: t2v complete, the VACE GGUF real, the i2v DiT a VAE in disguise, a truncated
    clip_vision, and nothing for the Wan 2.2 workflows."""
    root = tmp_path_factory.mktemp("ComfyUI")
    m = root / "models"
    write_sparse_safetensors(m / "diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors", comfy_dit_shapes(T2V_1_3B))
    tiny_umt5(m / "text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    tiny_vae(m / "vae/wan_2.1_vae.safetensors")
    write_sparse_gguf(m / "unet/Wan2.1_14B_VACE-Q3_K_S.gguf", comfy_dit_shapes(VACE_14B))
    tiny_vae(m / "diffusion_models/wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors")  # misnamed
    tiny_vae(m / "clip_vision/clip_vision_h.safetensors")
    with open(m / "clip_vision/clip_vision_h.safetensors", "r+b") as fh:  # truncated download
        fh.seek(0, 2)
        fh.truncate(fh.tell() - 100)
    # the 1.3B DiT saved under the Wan 2.2 5B name, in ComfyUI's other DiT folder
    write_sparse_safetensors(m / "unet/wan2.2_ti2v_5B_fp16.safetensors", comfy_dit_shapes(T2V_1_3B))
    return root


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    # the shipped catalogue without published sizes, so that tiny stand-ins reach the header checks
    data = json.loads(open(DEFAULT_PATH).read())
    for f in data["files"]:
        f.update(size=None, sha256=None, checksum_source=None)
    path = tmp_path_factory.mktemp("cat") / "catalog.json"
    path.write_text(json.dumps(data))
    return path


def checks_by_name(reports):
    return {c.file.name: c for r in reports for cs in r.slots.values() for c in cs}


def test_report_per_workflow(install, catalog):
    reports = vf.verify(load_catalog(catalog), install)
    ready = {r.workflow: r.ok for r in reports}
    assert ready == {"t2v": True, "t2v_long_context": True, "t2i_wan": True, "vace_reference": True,
                     "i2v": False, "t2v_vace_lora_reference": False, "wan22_t2v_a14b": False, "wan22_ti2v_5b": False,
                     # the Wan 2.2 A14B experts, the Lightning LoRAs and the FLF2V model are not installed
                     "wan22_i2v_a14b": False, "wan22_i2v_a14b_lightning": False, "wan22_t2v_a14b_lightning": False,
                     "flf2v": False, "wan22_flf2v": False,
                     # the native graphs need what their twins need (the CausVid LoRA, the experts)
                     "native_bonfire_vace": False, "native_wan22_i2v_a14b": False,
                     # the Fun, Animate, Phantom, ATI, S2V and HuMo models are not installed
                     "fun_control": False, "fun_inpaint": False, "wan22_animate": False,
                     "fun_camera": False, "phantom": False, "ati": False, "wan22_s2v": False, "humo": False}
    c = checks_by_name(reports)
    assert c["wan2.1_t2v_1.3B_fp16"].status == "ok"
    assert "dim 1536, 30 layers" in c["wan2.1_t2v_1.3B_fp16"].message
    assert c["umt5_xxl_fp8_e4m3fn_scaled"].status == "ok" and "UMT5" in c["umt5_xxl_fp8_e4m3fn_scaled"].message
    assert c["wan_2.1_vae"].status == "ok"
    assert c["Wan2.1_14B_VACE-Q3_K_S"].status == "ok" and "vace, dim 5120, 40 layers" in c["Wan2.1_14B_VACE-Q3_K_S"].message
    assert c["umt5_xxl_fp16"].status == "missing" and c["Wan21_CausVid_14B_T2V_lora_rank32"].status == "missing"
    bad = c["wan2.1_i2v_480p_14B_fp8_e4m3fn"]
    assert bad.status == "wrong" and "this is a Wan 2.1 VAE" in bad.message and "not a dit" in bad.message
    assert c["clip_vision_h"].status == "wrong" and "truncated" in c["clip_vision_h"].message
    ti2v = c["wan2.2_ti2v_5B_fp16"]
    assert ti2v.status == "wrong" and "t2v, dim 1536" in ti2v.message and "not ti2v_5b" in ti2v.message
    assert ti2v.path.endswith("unet/wan2.2_ti2v_5B_fp16.safetensors")


def test_published_size_catches_truncation_before_the_header(install):
    cat = load_catalog()  # the shipped one: wan_2.1_vae has its published size
    check = vf.check_file(cat.file("wan_2.1_vae"), install)
    assert check.status == "wrong" and "published size is 253815318 (truncated)" in check.message


def test_identify_lora_and_unknown():
    who = identify({"diffusion_model.blocks.0.self_attn.q.lora_A.weight": (32, 5120),
                    "diffusion_model.blocks.0.self_attn.q.lora_B.weight": (5120, 32)})
    assert (who.role, who.variant) == ("lora", "14b")
    who = identify({"model.layers.0.mlp.up_proj.weight": (8, 8)})
    assert who.role is None and "model.layers.0.mlp.up_proj.weight" in who.detail


def test_cli_exit_codes(install, catalog, capsys, monkeypatch):
    assert main(["models", "--catalog", str(catalog), "verify", "t2v", "vace_reference", "--comfyui", str(install)]) == 0
    out = capsys.readouterr().out
    assert "t2v: ready" in out and "vace_reference: ready" in out
    monkeypatch.setenv("COMFYUI_PATH", str(install))
    assert main(["models", "--catalog", str(catalog), "verify", "i2v"]) == 1
    out = capsys.readouterr().out
    assert "i2v: NOT READY" in out and "this is a Wan 2.1 VAE" in out and "truncated" in out
    assert main(["models", "--catalog", str(catalog), "verify", "nope"]) == 2
    assert main(["models", "verify", "--comfyui", str(install / "nothing-here")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_checksum_on_request(install, tmp_path):
    import hashlib

    vae = install / "models/vae/wan_2.1_vae.safetensors"
    data = json.loads(open(DEFAULT_PATH).read())
    entry = next(f for f in data["files"] if f["name"] == "wan_2.1_vae")
    entry.update(size=vae.stat().st_size, sha256=hashlib.sha256(vae.read_bytes()).hexdigest())
    (tmp_path / "good.json").write_text(json.dumps(data))
    assert vf.check_file(load_catalog(tmp_path / "good.json").file("wan_2.1_vae"), install, checksum=True).status == "ok"
    entry["sha256"] = "0" * 64
    (tmp_path / "bad.json").write_text(json.dumps(data))
    bad = load_catalog(tmp_path / "bad.json").file("wan_2.1_vae")
    assert vf.check_file(bad, install).status == "ok"  # the header alone cannot tell
    check = vf.check_file(bad, install, checksum=True)
    assert check.status == "wrong" and "differs from the published " + "0" * 64 in check.message
