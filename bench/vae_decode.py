"""How fast is our Wan VAE decode, and how much memory does it need, beside ComfyUI's and diffusers'?

Decodes 5, 21 and 41 latent frames (17, 81 and 161 video frames) with the same seeded random
weights in all three implementations, in one process, and prints time and peak memory with ratios
to ours. "ours-stream" hands each decoded chunk to a callback instead of keeping the video, which
is what keeps peak memory flat in the frame count.

Peak memory: on CUDA, torch.cuda.max_memory_allocated above what was allocated before the call;
on CPU, the peak of live tensor storage created during the call (see PeakMemory). Time ratios
use wall time on CUDA and process CPU time on CPU.

    python bench/vae_decode.py                      # small model and size: CPU, a minute or two
    python bench/vae_decode.py --device cuda --dim 96 --height 480 --width 832 --dtype bf16

Measured on one H100, bf16, real widths, random weights (time s / peak MiB at 5, 21, 41 latents):
  2.1 480x832   ours 0.38/3911, (21 not re-run), 3.53/4242   stream 3872 flat   ComfyUI 0.43/3897, 3.63/4233
                diffusers 0.44/4335, 4.12/4672
  2.2 704x1280  ours 0.78/8510, 3.71/8841, 7.39/9253   stream 8422 flat   ComfyUI 0.80/8484, 3.80/8818,
                7.58/9238   diffusers 0.88/10244, 4.20/10579, 8.38/10997
CPU default (dim 8, 64x64, counted tensor MiB at 5, 21, 41): ours 7.4, 10.9, 18.4 (the returned
video), ours-stream 6.6, 6.6, 6.7, ComfyUI 7.0, 10.8, 18.3. CPU times on a shared 2-core box
swing several-fold with other load; a profiler shows the same ops and op times for all three.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(1, os.path.join(REPO, "tests", "support"))

from wan.models.vae.layers import VAEConfig  # noqa: E402
from wan.models.vae.loading import diffusers_to_official, load_vae  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PeakMemory:
    """Peak bytes of tensor memory above the starting level while the `with` block runs.

    CUDA: the caching allocator's own counters. CPU: a dispatch mode adds up the storage of every
    op's fresh (non-view) output while its tensor lives; the process's resident set is useless on
    a shared machine, where the allocator keeps freed pages. The CPU mode slows ops down, so time
    is measured in a separate run.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self._mode = _LiveTensorBytes()
            self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._mode.__exit__(*exc)
            self.peak = self._mode.peak


class _LiveTensorBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def _free(self, n: int):
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t._base is None and not any(t is a for a in tree_leaves(args)):
                n = t.untyped_storage().nbytes()
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, n)
        return out


@torch.no_grad()
def measure(fn, z: torch.Tensor, device: torch.device) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, peak bytes) of one fn(z)."""
    if device.type == "cpu":
        with PeakMemory(device) as mem:  # counting slows ops: a separate, untimed run
            fn(z)
    start, cpu_start = time.perf_counter(), time.process_time()
    if device.type == "cuda":
        with PeakMemory(device) as mem:
            fn(z)
    else:
        fn(z)
    return time.perf_counter() - start, time.process_time() - cpu_start, mem.peak


def random_diffusers_state(version: str, dim: int, dec_dim: int | None, seed: int):
    """A diffusers AutoencoderKLWan of the given widths with seeded random weights (and the model)."""
    from diffusers import AutoencoderKLWan

    kw = dict(base_dim=dim, z_dim=16 if version == "2.1" else 48)
    if version == "2.2":
        kw.update(decoder_base_dim=dec_dim, is_residual=True, in_channels=12, out_channels=12, patch_size=2,
                  scale_factor_spatial=16, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)
    model = AutoencoderKLWan(**kw)
    sd = random_like(model.state_dict(), seed)
    model.load_state_dict(sd)
    return model, sd


def random_like(template: dict, seed: int) -> dict:
    """Seeded random tensors shaped like `template`, scaled so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in template.items():
        t = torch.randn(v.shape, generator=g)
        sd[k] = 1 + 0.1 * t if k.endswith("gamma") else (t / v[0].numel() ** 0.5 if v.ndim > 1 else 0.1 * t)
    return sd


def import_comfy(module: str, device: torch.device):
    """A ComfyUI module from the reference copy, its options parsed for this device.

    (tests/support/refs.py always forces --cpu, which on a GPU would make ComfyUI's VAE attention fall
    back to its slow split attention: not a fair comparison.)
    """
    import importlib

    from refs import comfyui_dir

    root = str(comfyui_dir())
    if root not in sys.path:
        sys.path.append(root)
    import comfy.options

    comfy.options.enable_args_parsing()
    saved, sys.argv = sys.argv, [sys.argv[0]] + (["--cpu"] if device.type == "cpu" else [])
    try:
        import comfy.cli_args  # noqa: F401
    finally:
        sys.argv = saved
    return importlib.import_module(module)


def build(args, device, dtype):
    """{name: decode(z) callable} for ours, ours-stream and whichever references import."""
    dec_dim = args.dec_dim or (args.dim * 8 // 5 if args.version == "2.2" else None)
    impls = {}
    try:
        dmodel, dsd = random_diffusers_state(args.version, args.dim, dec_dim, args.seed)
    except ImportError:
        dmodel, dsd = None, None
    if dsd is None:  # no diffusers here: our own random official weights
        from wan.models.vae.wan21 import WanVAE
        from wan.models.vae.wan22 import WanVAE22

        cls = WanVAE if args.version == "2.1" else WanVAE22
        cfg = VAEConfig(dim=args.dim, z_dim=16 if args.version == "2.1" else 48, dec_dim=dec_dim)
        official = random_like(cls(cfg).state_dict(), args.seed)
    else:
        official = diffusers_to_official(dsd)
    ours = load_vae(official, dtype=dtype, device=device)

    def stream(z):
        ours.decode(z, frame_callback=lambda chunk: None)

    impls["ours"] = ours.decode
    impls["ours-stream"] = stream

    try:
        mod = import_comfy("comfy.ldm.wan.vae" if args.version == "2.1" else "comfy.ldm.wan.vae2_2", device)
        kw = dict(dim=args.dim, z_dim=ours.z_dim, num_res_blocks=2, temperal_downsample=[False, True, True])
        if args.version == "2.2":
            kw["dec_dim"] = dec_dim
        cmodel = mod.WanVAE(**kw)
        cmodel.load_state_dict(official)
        cmodel = cmodel.to(device=device, dtype=dtype).eval()
        impls["comfyui"] = lambda z: cmodel.decode(z).clamp(-1, 1)
    except Exception as exc:  # a reference that cannot load here is reported, not fatal
        print(f"ComfyUI reference unavailable: {exc!r}")
    if dmodel is not None:
        dmodel = dmodel.to(device=device, dtype=dtype).eval()
        impls["diffusers"] = lambda z: dmodel.decode(z).sample
    return impls, ours


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--version", choices=["2.1", "2.2"], default="2.1")
    ap.add_argument("--frames", default="5,21,41", help="latent frame counts, comma-separated")
    ap.add_argument("--height", type=int, default=64, help="video height in pixels")
    ap.add_argument("--width", type=int, default=64, help="video width in pixels")
    ap.add_argument("--dim", type=int, default=8, help="base width (the real models: 96 for 2.1, 160 for 2.2)")
    ap.add_argument("--dec-dim", type=int, default=None, help="2.2 decoder width (real: 256; default dim*8/5)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="comma-separated subset of ours,ours-stream,comfyui,diffusers")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    impls, ours = build(args, device, dtype)
    if args.only:
        impls = {k: v for k, v in impls.items() if k in args.only.split(",")}
    s = ours.spatial_compression
    h, w = args.height // s, args.width // s
    print(f"Wan {args.version} VAE decode, dim {args.dim}, {args.height}x{args.width}, {args.dtype} on {device}"
          f" (torch {torch.__version__}, {torch.get_num_threads()} threads)")

    g = torch.Generator().manual_seed(args.seed + 1)
    warm = torch.randn(1, ours.z_dim, 2, h, w, generator=g).to(device, dtype)
    with torch.no_grad():
        for fn in impls.values():
            fn(warm)
    # On a shared CPU, wall time swings with other load; the ratio uses CPU time there.
    print(f"{'latent':>6} {'video':>5}  {'impl':<12} {'time s':>8} {'cpu s':>7} {'peak MiB':>9}  "
          f"{'time/ours':>9} {'mem/ours':>8}")
    for t in (int(x) for x in args.frames.split(",")):
        z = torch.randn(1, ours.z_dim, t, h, w, generator=g).to(device, dtype)
        base = None
        for name, fn in impls.items():
            seconds, cpu, peak = measure(fn, z, device)
            mib = peak / 2**20
            cost = cpu if device.type == "cpu" else seconds
            base = base or (cost, max(mib, 1e-9))
            print(f"{t:>6} {1 + 4 * (t - 1):>5}  {name:<12} {seconds:>8.2f} {cpu:>7.2f} {mib:>9.1f}  "
                  f"{cost / base[0]:>9.2f} {mib / base[1]:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
