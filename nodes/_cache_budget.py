"""The model cache's RAM budget (``nodes._common.ModelCache``): how many bytes it may hold, and
which entries go first when it holds more.

ComfyUI never frees CPU memory to load a model (``load_models_gpu`` frees room on compute devices
only), so before the budget every distinct model file a graph read stayed in RAM until POST /free.
"""

from __future__ import annotations

import os
from typing import Callable, Hashable, Iterable

from ..wan.errors import WanInputError
from ..wan.job.memory import host_total

BUDGET_ENV = "WAN_MODEL_CACHE_GB"
# Half the physical RAM: the other half stays for ComfyUI's own models, the job's latents and
# activations, the OS and its file cache, while one workflow's models (DiT, UMT5, VAE, CLIP vision)
# fit in it on any machine that can hold them in RAM at all.
BUDGET_FRACTION = 0.5


def cache_budget() -> int | None:
    """Bytes of host RAM the model cache may hold: ``$WAN_MODEL_CACHE_GB`` (decimal GB; 0 keeps only
    the model used last) when set, else ``BUDGET_FRACTION`` of the physical RAM; None: no limit
    (RAM unknown)."""
    value = os.environ.get(BUDGET_ENV, "").strip()
    if not value:
        total = host_total()
        return None if total is None else int(total * BUDGET_FRACTION)
    try:
        gb = float(value)
    except ValueError:
        gb = float("nan")
    if not 0 <= gb < float("inf"):
        raise WanInputError(f"{BUDGET_ENV} must be a number of GB >= 0 (the Wan model cache's RAM budget), "
                            f"got {value[:40]!r}")
    return int(gb * 1e9)


def on_compute_device(patcher, module) -> bool:
    """ComfyUI holds the model loaded: its patcher is listed among ComfyUI's loaded models and its
    weights are on a compute device (a CPU-only ComfyUI lists what it ran with but never unloads it
    for room, so there a listed model is not held)."""
    import comfy.model_management as mm

    if module is None or not any(p is patcher for p in mm.loaded_models()):
        return False
    device = next((t.device for t in module.parameters()), None)
    return device is not None and device.type not in ("cpu", "meta")


def to_evict(held: Iterable[tuple[Hashable, int, int]], budget: int, reserve: int,
             kept: Callable[[Hashable], bool]) -> list[Hashable]:
    """Keys to drop, least recently used first, until the rest plus ``reserve`` bytes fit ``budget``.
    held: (key, last use, bytes in RAM) of each entry held strongly; kept(key): never dropped."""
    held = list(held)
    total = sum(size for _key, _used, size in held) + reserve
    out = []
    for key, _used, size in sorted(held, key=lambda item: item[1]):
        if total <= budget:
            break
        if size and not kept(key):
            out.append(key)
            total -= size
    return out
