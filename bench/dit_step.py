"""One Wan DiT denoising forward: ours beside ComfyUI's and diffusers' networks, same weights.

Prints seconds per forward, peak memory of the forward over the resident weights (CUDA
max_memory_allocated on GPU; sampled process RSS on CPU) and our ratios to each reference.

    python bench/dit_step.py --dim 1.3b --layers 4 --frames 17 --height 480 --width 832 --device cpu
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wan.models.dit.config import DIT_PRESETS  # noqa: E402
from wan.job.load import build_dit  # noqa: E402
from wan.job.options import LoadOptions  # noqa: E402

DIM_PRESETS = {"1.3b": "t2v_1_3b", "14b": "t2v_14b", "5b": "ti2v_5b"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def prepare_comfy(device: str):
    """Import ComfyUI's Wan model with its PyTorch (SDPA) attention, the same kernel as ours."""
    sys.path.insert(0, str(REPO / "tests" / "support"))
    from refs import comfyui_dir

    sys.path.append(str(comfyui_dir()))
    import comfy.options

    comfy.options.enable_args_parsing()
    saved = sys.argv
    sys.argv = [saved[0], "--use-pytorch-cross-attention"] + (["--cpu"] if device == "cpu" else [])
    try:
        import comfy.cli_args  # noqa: F401
    finally:
        sys.argv = saved
    import comfy.ldm.wan.model
    import comfy.ops

    return comfy.ldm.wan.model, comfy.ops


def random_weights(cfg, dtype, seed=0) -> dict:
    from wan.models.dit.model import WanDiT

    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WanDiT(cfg).state_dict().items()}
    sd = {}
    for k, shape in shapes.items():
        r = torch.randn(shape, generator=g)
        if k.endswith("modulation"):
            r = 0.3 * r
        elif "norm" in k:
            r = 1 + 0.2 * r
        elif len(shape) > 1:
            r = r / shape[1:].numel() ** 0.5
        else:
            r = 0.1 * r
        sd[k] = r.to(dtype)
    return sd


class RssPeak:
    """Peak resident set size while the block runs, sampled every 20 ms (CPU only; a faster poll
    competed with the 2 compute threads on a 2-core box)."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self.stop = False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self):
        while not self.stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        self.peak = max(self.peak, self._rss())


def measure(fns: dict, device: str, warmup: int, repeat: int, rss: bool = True) -> dict:
    """{name: (median wall s, median process CPU s, peak bytes above the memory in use before)}.

    The implementations run in turns, one forward each per round and in a rotating order, so a
    machine whose load drifts (a shared CPU) slows all of them alike; on a shared CPU the process
    CPU time is the steadier figure.
    """
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    peak = dict.fromkeys(fns, 0)
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        sync()
        names = list(fns)
        for r in range(repeat):
            # Rotate who goes first so a position effect (allocator, caches) hits each alike.
            for name in names[r % len(names):] + names[: r % len(names)]:
                fn = fns[name]
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    t0, c0 = time.perf_counter(), time.process_time()
                    out = fn()
                    sync()
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
                    peak[name] = max(peak[name], torch.cuda.max_memory_allocated() - base)
                elif rss:
                    with RssPeak() as sampler:
                        t0, c0 = time.perf_counter(), time.process_time()
                        out = fn()
                        wall[name].append(time.perf_counter() - t0)
                        cpu[name].append(time.process_time() - c0)
                    peak[name] = max(peak[name], sampler.peak - sampler.start)
                else:
                    t0, c0 = time.perf_counter(), time.process_time()
                    out = fn()
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
                del out
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k]), peak[k]) for k in fns}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", default="1.3b", choices=sorted(DIM_PRESETS) + sorted(DIT_PRESETS),
                    help="size preset (1.3b, 14b, 5b) or any variant name")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--frames", type=int, default=17, help="video frames (pixels)")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads")
    ap.add_argument("--no-rss", action="store_true",
                    help="CPU: skip the RSS sampler thread (timings only; it can perturb a 2-core box)")
    ap.add_argument("--residual-fp32", action="store_true", help="our residual stream in fp32 (official numerics)")
    ap.add_argument("--skip", default="", help="comma list of references to skip: comfyui,diffusers")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    import dataclasses

    base = DIT_PRESETS[DIM_PRESETS.get(args.dim, args.dim)]
    cfg = dataclasses.replace(base, num_layers=args.layers, variant=f"{base.variant}_{args.layers}l",
                              vace_layers=tuple(range(0, args.layers, 2)) if base.vace_layers else ())
    if cfg.model_type not in ("t2v", "ti2v"):
        raise SystemExit("the bench runs the text-to-video networks (t2v_*, ti2v_5b)")
    dtype, dev = DTYPES[args.dtype], args.device
    spatial = 16 if cfg.vae == "wan2.2" else 8
    lat = (cfg.out_dim, (args.frames - 1) // 4 + 1, args.height // spatial, args.width // spatial)
    tokens = lat[1] * (lat[2] // 2) * (lat[3] // 2)
    print(f"{cfg.variant}: dim {cfg.dim}, {cfg.num_layers} layers, latent {lat} = {tokens} tokens, "
          f"{args.dtype} on {dev} ({torch.get_num_threads()} threads)")

    sd = random_weights(cfg, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, *lat, generator=g).to(dev)
    t = torch.tensor([700.0], device=dev)
    ctx = torch.zeros(1, 512, cfg.text_dim)
    ctx[:, :40] = torch.randn(1, 40, cfg.text_dim, generator=g)
    ctx = ctx.to(dev)
    fns = {}

    ours = build_dit(dict(sd), LoadOptions(dtype=dtype, device=dev))
    ours.residual_fp32 = args.residual_fp32
    fns["ours"] = lambda: ours(x, t, ctx)
    skip = set(filter(None, args.skip.split(",")))

    if "comfyui" not in skip:
        wan, ops = prepare_comfy(dev)
        cmodel = wan.WanModel(model_type="t2v", in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim, out_dim=cfg.out_dim,
                             num_heads=cfg.num_heads, num_layers=cfg.num_layers, device=dev, dtype=dtype,
                             operations=ops.disable_weight_init)
        cmodel.load_state_dict(sd)
        cmodel.eval()
        # ComfyUI's model_base hands the network inputs in the model dtype.
        xc, cc = x.to(dtype), ctx.to(dtype)
        fns["comfyui"] = lambda: cmodel(xc, t, cc)

    if "diffusers" not in skip:
        from diffusers import WanTransformer3DModel

        from wan.weights.names import diffusers_to_official_name

        with torch.device("meta"):
            model = WanTransformer3DModel(
                num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim, in_channels=cfg.in_dim,
                out_channels=cfg.out_dim, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers)
        model.load_state_dict({k: sd[diffusers_to_official_name(k)] for k in model.state_dict()}, assign=True)
        model.rope = type(model.rope)(cfg.head_dim, cfg.patch_size, 1024)  # its buffers are not in the state dict
        model = model.to(dev).eval()
        xd, cd = x.to(dtype), ctx.to(dtype)
        fns["diffusers"] = lambda: model(xd, t, cd, return_dict=False)[0]

    results = measure(fns, dev, args.warmup, args.repeat, rss=not args.no_rss)

    print(f"{'implementation':<12} {'s/forward':>10} {'CPU s':>8} {'peak MiB':>10}")
    for name, (sec, cpu_s, peak) in results.items():
        print(f"{name:<12} {sec:>10.3f} {cpu_s:>8.2f} {peak / 2**20:>10.0f}")
    for name in ("comfyui", "diffusers"):
        if name in results:
            o, r = results["ours"], results[name]
            print(f"ours / {name}: time {o[0] / r[0]:.3f}, CPU time {o[1] / r[1]:.3f}, "
                  f"peak memory {o[2] / max(r[2], 1):.3f}")
    return results


if __name__ == "__main__":
    main()
