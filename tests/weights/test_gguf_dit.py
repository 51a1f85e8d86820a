"""A tiny Wan DiT written to GGUF by our writer, loaded packed, run, and measured.

References: the same GGUF dequantized by gguf-py and loaded as plain fp32 weights (the packed
model must agree to fp32 rounding), and the original fp32 model (the difference is the
quantization error, bounded per type below). Memory: the packed model holds about the file's
size, measured both as packed bytes and as process RSS growth in a fresh interpreter.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

gguf = pytest.importorskip("gguf")

from wan.models.dit.config import DIT_PRESETS  # noqa: E402
from wan.models.dit.model import WanDiT  # noqa: E402
from wan.weights.gguf import read_gguf  # noqa: E402
from wan.weights.packed import PackedLinear, attach_packed, packed_storage_bytes  # noqa: E402
from wan.weights.quantize import write_gguf  # noqa: E402

CFG = DIT_PRESETS["t2v_1_3b"].tiny(dim=256, ffn_dim=512, num_layers=2)
# measured relative L2 errors of the output (Q8_0 ~0.2%, Q4_0 ~4%) with margin
MAX_REL_ERR = {"Q8_0": 0.01, "Q4_0": 0.10, "Q4_K": 0.10}


def tiny_model(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    model = WanDiT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("modulation"):
                p.normal_(0, 0.2)  # non-trivial modulation
    return model


def inputs(cfg=CFG, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.out_dim, 2, 4, 4, generator=g)
    t = torch.tensor([500.0])
    ctx = torch.randn(1, 8, cfg.text_dim, generator=g)
    return x, t, ctx


def load_packed(path, cfg=CFG):
    state, _ = read_gguf(path)
    with torch.device("meta"):
        model = WanDiT(cfg)
    attach_packed(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_reference(path, cfg=CFG):
    reader = gguf.GGUFReader(str(path))
    sd = {}
    for t in reader.tensors:
        shape = tuple(int(v) for v in reversed(t.shape))
        sd[t.name] = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float().reshape(shape)
    model = WanDiT(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_K"])
def test_quantized_tiny_dit(tmp_path, qtype):
    model = tiny_model()
    path = tmp_path / f"tiny_{qtype}.gguf"
    plan = write_gguf(model.state_dict(), path, qtype)
    assert plan["patch_embedding.weight"] == "F32" and plan["blocks.0.modulation"] == "F32"
    assert plan["blocks.0.self_attn.q.weight"] == qtype and plan["head.head.weight"] == "F32"
    packed = load_packed(path)
    assert isinstance(packed.blocks[0].self_attn.q, PackedLinear)
    assert isinstance(packed.blocks[1].ffn[2], PackedLinear)
    x, t, ctx = inputs()
    with torch.no_grad():
        out = packed(x, t, ctx)
        ref = load_reference(path)(x, t, ctx)
        full = model(x, t, ctx)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    rel = float((out - full).norm() / full.norm())
    print(f"{qtype}: relative output error vs fp32 {rel:.5f}")
    assert rel < MAX_REL_ERR[qtype], f"{qtype}: relative error {rel:.4f}"
    assert rel > 0  # the quantization really happened


def test_packed_bytes_close_to_file_size(tmp_path):
    model = tiny_model()
    path = tmp_path / "tiny_q4.gguf"
    write_gguf(model.state_dict(), path, "Q4_0")
    packed = load_packed(path)
    held = packed_storage_bytes(packed) + sum(p.numel() * p.element_size() for p in packed.parameters()) \
        + sum(b.numel() * b.element_size() for n, b in packed.named_buffers() if not n.endswith("packed"))
    size = path.stat().st_size
    fp32 = sum(p.numel() * 4 for p in model.parameters())
    assert abs(held - size) < 0.02 * size + 65536, (held, size)
    # the quantized block weights: 18 bytes per 32 weights instead of 128
    quantized = sum(p.numel() * 4 for n, p in model.named_parameters()
                    if n.startswith("blocks.") and p.ndim == 2)
    assert packed_storage_bytes(packed) == quantized * 18 // 128
    assert held < 0.6 * fp32


RSS_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096
    from wan.models.dit.config import DIT_PRESETS
    from wan.models.dit.model import WanDiT
    from wan.weights.gguf import read_gguf
    from wan.weights.packed import attach_packed
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(dim=768, ffn_dim=3072, num_layers=6)
    # warm-up on a plain model first: kernels and libraries loaded on first use count in RSS too
    warm = WanDiT(DIT_PRESETS["t2v_1_3b"].tiny(dim=128, ffn_dim=256, num_layers=1))
    from wan.weights.packed import PackedTensor, PackedLinear
    from wan.weights.dequant import DEQUANTIZERS
    lin = PackedLinear(PackedTensor(torch.zeros(4 * 18, dtype=torch.uint8), "Q4_0", (4, 32)))
    with torch.no_grad():
        warm(torch.randn(1, 16, 1, 2, 2), torch.tensor([500.0]), torch.randn(1, 4, 4096))
        lin(torch.randn(2, 32))
    del warm
    before = rss()
    state, _ = read_gguf(sys.argv[1])
    with torch.device("meta"):
        model = WanDiT(cfg)
    attach_packed(model, state)
    model.load_state_dict(state, strict=True, assign=True)
    with torch.no_grad():
        model(torch.randn(1, 16, 1, 2, 2), torch.tensor([500.0]), torch.randn(1, 4, 4096))
    print(json.dumps({"growth": rss() - before, "before": before}))
""")


def test_rss_growth_close_to_file_size(tmp_path):
    cfg = CFG.tiny(dim=768, ffn_dim=3072, num_layers=6)
    model = tiny_model(cfg)
    fp32 = sum(p.numel() * 4 for p in model.parameters())
    path = tmp_path / "rss_q4.gguf"
    write_gguf(model.state_dict(), path, "Q4_0")
    del model
    size = path.stat().st_size
    # Large blocks through mmap and freed memory trimmed at once: otherwise whether glibc keeps the
    # forward's freed temporaries in its heap varies from run to run (seen: 79 or 121 MiB growth).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(path)], capture_output=True, text=True, env=env,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    growth = json.loads(out.stdout.strip().splitlines()[-1])["growth"]
    print(f"RSS growth {growth / 2**20:.1f} MiB, file {size / 2**20:.1f} MiB, fp32 {fp32 / 2**20:.1f} MiB")
    # fp32 ~ 230 MB (bf16 ~ 115 MB), Q4_0 file ~ 47 MB (text embedding stays F32 by the file
    # conventions). Growth must be near the file and well below bf16; the slack covers one
    # layer's transient fp32 weight and its dequantization temporaries, and allocator caches.
    assert growth < size + 32 * 2**20, (growth, size, fp32)
    assert growth < 0.35 * fp32, (growth, size, fp32)
