"""``python -m wan quantize``: files gguf-py reads with ComfyUI-GGUF's layout; atomic on failure."""

import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

gguf = pytest.importorskip("gguf")

from wan.cli import main  # noqa: E402
from wan.weights import quantize as quantize_mod  # noqa: E402
from wan.weights.quantize import quantize_q4_k  # noqa: E402


def source_dict():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)  # noqa: E731
    return {
        "model.diffusion_model.patch_embedding.weight": r(128, 16, 1, 2, 2),
        "model.diffusion_model.patch_embedding.bias": r(128),
        "model.diffusion_model.text_embedding.0.weight": r(128, 4096),
        "model.diffusion_model.time_projection.1.weight": r(768, 128),
        "model.diffusion_model.blocks.0.self_attn.q.weight": r(128, 128),
        "model.diffusion_model.blocks.0.self_attn.q.bias": r(128),
        "model.diffusion_model.blocks.0.self_attn.norm_q.weight": r(128),
        "model.diffusion_model.blocks.0.ffn.0.weight": r(512, 128),
        "model.diffusion_model.blocks.0.ffn.2.weight": r(128, 512),
        "model.diffusion_model.blocks.0.modulation": r(1, 6, 128),
        "model.diffusion_model.head.head.weight": r(64, 128),
        "model.diffusion_model.head.modulation": r(1, 2, 128),
    }


EXPECTED_TYPES = {  # FORMATS.md: what ComfyUI-GGUF's Wan files keep in which precision
    "patch_embedding.weight": "F32", "patch_embedding.bias": "F32", "text_embedding.0.weight": "BF16",
    "time_projection.1.weight": "BF16", "blocks.0.self_attn.q.bias": "F32",
    "blocks.0.self_attn.norm_q.weight": "F32", "blocks.0.modulation": "F32",
    "head.head.weight": "BF16", "head.modulation": "F32",
}


@pytest.mark.parametrize("qtype", ["Q8_0", "Q5_1", "Q4_0", "Q4_K", "F16"])
def test_cli_writes_comfyui_gguf_layout(tmp_path, qtype, capsys):
    src = tmp_path / "wan_bf16.safetensors"
    sd = source_dict()
    save_file(sd, str(src))
    dst = tmp_path / f"wan_{qtype}.gguf"
    assert main(["quantize", str(src), str(dst), "--type", qtype]) == 0
    assert "wrote" in capsys.readouterr().err
    reader = gguf.GGUFReader(str(dst))
    arch = reader.get_field("general.architecture")
    assert bytes(arch.parts[arch.data[0]]).decode() == "wan"
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert set(types) == {k.removeprefix("model.diffusion_model.") for k in sd}
    for name, expected in EXPECTED_TYPES.items():
        assert types[name] == expected, name
    block = gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, qtype)][0]
    for name in ("blocks.0.self_attn.q.weight", "blocks.0.ffn.0.weight", "blocks.0.ffn.2.weight"):
        row = sd["model.diffusion_model." + name].shape[-1]
        # rows that do not fill whole blocks (128 for Q4_K's 256) stay in the source dtype
        assert types[name] == (qtype if row % block == 0 else "BF16"), name
    for t in reader.tensors:  # every tensor decodes (gguf-py) close to its source
        src_t = sd["model.diffusion_model." + t.name].float()
        got = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).reshape(src_t.shape)
        rel = float((got - src_t).norm() / src_t.norm())
        assert rel < (0.1 if qtype in ("Q4_0", "Q4_K") else 0.05), (t.name, rel)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_failure_leaves_no_file(tmp_path, monkeypatch):
    src = tmp_path / "wan.safetensors"
    save_file(source_dict(), str(src))
    dst = tmp_path / "out.gguf"
    calls = {"n": 0}
    real = quantize_mod._encode

    def failing(t, gtype):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full (simulated)")
        return real(t, gtype)

    monkeypatch.setattr(quantize_mod, "_encode", failing)
    assert main(["quantize", str(src), str(dst), "--type", "Q8_0", "--quiet"]) == 1
    assert sorted(os.listdir(tmp_path)) == ["wan.safetensors"]


def test_refuses_pickles_and_non_wan(tmp_path, capsys):
    pt = tmp_path / "model.ckpt"
    torch.save({"a": torch.zeros(1)}, pt)
    assert main(["quantize", str(pt), str(tmp_path / "x.gguf")]) == 1
    assert "pickle" in capsys.readouterr().err
    other = tmp_path / "vae.safetensors"
    save_file({"encoder.conv1.weight": torch.zeros(4, 4)}, str(other))
    assert main(["quantize", str(other), str(tmp_path / "x.gguf")]) == 1
    assert "patch_embedding" in capsys.readouterr().err
    assert not (tmp_path / "x.gguf").exists()


def test_q4_k_encoder_decodes_with_gguf_py():
    w = torch.randn(8, 512, generator=torch.Generator().manual_seed(3))
    w[0, :256] = 0.0  # an all-zero super-block must decode to zeros
    raw = quantize_q4_k(w).numpy()
    assert raw.shape == (8, 2 * 144)
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_K)
    assert np.all(ref[0, :256] == 0)
    rel = np.linalg.norm(ref - w.numpy()) / np.linalg.norm(w.numpy())
    assert rel < 0.1, rel  # measured ~0.08 for Gaussian weights (llama.cpp's search gets ~0.06)
