"""What the whole-model benches share (bench/gpu.py, bench/e2e.py): ComfyUI's modules in this
process, the pinned SDPA backend, timing (one warm-up, then timed calls: median, min, max), the
code version a results file records.

Importing it puts the repository and tests/support first on ``sys.path`` (``wan``, ``refs``).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
for _path in (os.path.join(ROOT, "tests", "support"), ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def comfy(module: str):
    """ComfyUI's module from the reference copy (tests/support/refs.py finds it), on the GPU when there is one."""
    from refs import comfyui_dir

    root = str(comfyui_dir())
    if root not in sys.path:
        sys.path.append(root)
    import comfy.options

    comfy.options.enable_args_parsing()
    saved = sys.argv
    sys.argv = [saved[0], "--use-pytorch-cross-attention"] + ([] if torch.cuda.is_available() else ["--cpu"])
    try:
        import comfy.cli_args  # noqa: F401
    finally:
        sys.argv = saved
    return importlib.import_module(module)


def comfy_nodes():
    """ComfyUI's own ``nodes`` module (its core nodes: UNETLoader, KSamplerAdvanced, ...). Our
    package of the same name is never imported by a bench, so ComfyUI's takes the name, as in its
    server, and its comfy_extras modules find it."""
    existing = sys.modules.get("nodes")
    if existing is not None and hasattr(existing, "KSamplerAdvanced"):
        return existing
    comfy("comfy.model_management")  # arguments parsed before nodes.py reads them
    from refs import comfyui_dir

    spec = importlib.util.spec_from_file_location("nodes", os.path.join(str(comfyui_dir()), "nodes.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["nodes"] = module
    spec.loader.exec_module(module)
    return module


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SDPA_BACKENDS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "math": "MATH"}


def pinned_sdpa(name: str):
    """Both sides' SDPA restricted to one backend ("any": PyTorch's own choice)."""
    if name == "any":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[name])])


def measure(fn, device, reps: int, sdpa: str = "any") -> tuple[list[float], float]:
    """(seconds of each timed call, peak GiB) of ``fn()`` after one warm-up call."""
    times = []
    with torch.inference_mode(), pinned_sdpa(sdpa):
        fn()
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return times, peak


def timing_row(label: str, times: list[float], peak: float | None, seconds_key: str = "s_per_step") -> dict:
    return {"case": label, seconds_key: round(statistics.median(times), 4), "min": round(min(times), 4),
            "max": round(max(times), 4), "timed_steps": len(times),
            "peak_gib": None if peak is None else round(peak, 2)}


def free(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def code_version() -> str:
    out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"
