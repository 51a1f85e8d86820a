"""One Wan DiT forward: plain weights vs packed Q8_0 vs packed Q4_K (our GGUF writer and reader).

Prints time per step, weight memory (and CUDA peak) as ratios to the plain model, and the share
of the packed step spent dequantizing; then the same file with ``dequant_cache="on"`` (expansions
kept on the device). Plain is bf16 on a GPU and fp32 on the CPU.

    python bench/gguf_step.py [--dim 1536 --ffn 8960 --layers 4 --frames 5 --size 32 --device cuda]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wan.job.load import load_dit  # noqa: E402
from wan.job.options import LoadOptions  # noqa: E402
from wan.models.dit.config import DIT_PRESETS  # noqa: E402
from wan.models.dit.model import WanDiT  # noqa: E402
from wan.weights import packed as packed_mod  # noqa: E402
from wan.weights.packed import packed_storage_bytes  # noqa: E402
from wan.weights.quantize import write_gguf  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def weight_bytes(model):
    plain = sum(p.numel() * p.element_size() for p in model.parameters())
    plain += sum(b.numel() * b.element_size() for n, b in model.named_buffers() if not n.endswith("packed"))
    return plain + packed_storage_bytes(model)


def timed_step(model, inputs, device, reps):
    with torch.no_grad():
        model(*inputs)  # warm-up
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(reps):
            model(*inputs)
        sync(device)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    return (time.perf_counter() - t0) / reps, peak


def dequant_share(model, inputs, device, reps):
    """Time spent inside dequantization during ``reps`` steps (synchronized around each call)."""
    spent = [0.0]
    real = packed_mod.dequantize_packed

    def timed(*a, **k):
        sync(device)
        t0 = time.perf_counter()
        out = real(*a, **k)
        sync(device)
        spent[0] += time.perf_counter() - t0
        return out

    packed_mod.dequantize_packed = timed
    try:
        step, _ = timed_step(model, inputs, device, reps)
    finally:
        packed_mod.dequantize_packed = real
    return spent[0] / reps / step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--ffn", type=int, default=8960)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--size", type=int, default=16, help="latent height and width")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(dim=args.dim, ffn_dim=args.ffn, num_layers=args.layers)
    torch.manual_seed(0)
    base = WanDiT(cfg).eval()
    sd = {k: v.detach().clone() for k, v in base.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    inputs = (torch.randn(1, 16, args.frames, args.size, args.size, generator=g).to(device),
              torch.tensor([500.0], device=device),
              torch.randn(1, 64, 4096, generator=g).to(device, dtype))
    plain = base.to(device=device, dtype=dtype)
    plain.dtype_override = dtype
    t_plain, peak_plain = timed_step(plain, inputs, device, args.reps)
    w_plain = weight_bytes(plain)
    del plain, base
    print(f"device {device}, dim {args.dim}, ffn {args.ffn}, layers {args.layers}, "
          f"tokens {args.frames * args.size * args.size // 4}, plain dtype {dtype}")
    print(f"{'plain':6s} step {t_plain * 1e3:8.1f} ms   weights {w_plain / 2**20:7.1f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        for qtype in ("Q8_0", "Q4_K"):
            path = os.path.join(tmp, f"m_{qtype}.gguf")
            write_gguf(sd, path, qtype)
            model = load_dit(path, LoadOptions(dtype=dtype, device=device))
            t, peak = timed_step(model, inputs, device, args.reps)
            share = dequant_share(model, inputs, device, args.reps)
            w = weight_bytes(model)
            peak_txt = f"   CUDA peak x{peak / peak_plain:.2f}" if peak_plain else ""
            print(f"{qtype:6s} step {t * 1e3:8.1f} ms (x{t / t_plain:.2f})   weights {w / 2**20:7.1f} MiB "
                  f"(x{w / w_plain:.2f}, file {os.path.getsize(path) / 2**20:.1f} MiB){peak_txt}   "
                  f"dequant {share * 100:.0f}% of step")
            del model
            kept = load_dit(path, LoadOptions(dtype=dtype, device=device, dequant_cache="on"))
            t, peak = timed_step(kept, inputs, device, args.reps)
            peak_txt = f"   CUDA peak x{peak / peak_plain:.2f}" if peak_plain else ""
            print(f"{qtype + '+kept':6s} step {t * 1e3:8.1f} ms (x{t / t_plain:.2f}){peak_txt}")
            del kept


if __name__ == "__main__":
    main()
