"""Attention mode name -> kernel, and ``auto``: the fastest kernel the computing device can run.

``auto`` (the default) is resolved at the first call, on the device the queries are on (a model
loaded to the CPU may compute on a GPU later), in the order of ``AUTO_ORDER``: comfy-kitchen's
INT8 attention (prebuilt wheel, no compile step), then SageAttention 2+ (SageAttention 1 measured
slower than SDPA on an H100), then SDPA. When a GPU cannot run the faster kernels it says why in
one notice (once per process and reason) and runs SDPA; on a CPU SDPA is the fastest there is, and
nothing is said. The chosen kernel runs behind ``GuardedKernel`` like an explicitly named one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import torch

from ...errors import WanInputError
from ...notices import notify
from .attention import Kernel, sdpa
from .attention_backends import ATTENTION_MODES, OPTIONAL_KERNELS, capability, optional_kernel, unavailable

AUTO_ORDER = ("int8", "sage")
_SAID: set[str] = set()  # auto's fall-back notices already given in this process


def _package_refuses(mode: str, device: torch.device) -> str | None:
    # what only the package itself can tell: its own GPU check, its major version
    if mode == "int8":
        import comfy_kitchen

        if not comfy_kitchen.int8_attention_is_available(device):
            return "comfy-kitchen's INT8 attention kernel is not available for this GPU"
    if mode == "sage":
        version = importlib.metadata.version("sageattention")
        if int(version.split(".")[0]) < 2:
            return f"sageattention {version} is slower than sdpa (2.0 or newer is used)"
    return None


def choose(device: torch.device) -> tuple[str, list[str]]:
    """(the mode auto runs on ``device``, why each faster mode was passed over)."""
    if device.type != "cuda":
        return "sdpa", []
    reasons = []
    for mode in AUTO_ORDER:
        try:
            why = unavailable(mode, device) or _package_refuses(mode, device)
        except ImportError as e:
            why = f"its package cannot be imported ({e})"
        if why is None:
            return mode, reasons
        reasons.append(f"{mode} {why}")
    return "sdpa", reasons


class AutoKernel:
    """The ``auto`` kernel: resolved on the first call's device, again if the device changes."""

    mode = "auto"

    def __init__(self):
        self.device: torch.device | None = None
        self.kernel: Kernel = sdpa
        self.chosen = "sdpa"

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.device != q.device:
            self._resolve(q.device)
        return self.kernel(q, k, v)

    @torch.compiler.disable
    def _resolve(self, device: torch.device) -> None:
        self.device = device
        mode, reasons = choose(device)
        if mode != "sdpa":
            try:
                self.kernel, self.chosen = optional_kernel(mode), mode
                return
            except WanInputError as e:
                reasons.append(str(e))
        self.kernel, self.chosen = sdpa, "sdpa"
        if reasons:
            _say_once(f"attention auto: using sdpa ({'; '.join(reasons)})")


def _say_once(message: str) -> None:
    if message not in _SAID:
        _SAID.add(message)
        notify(message, stacklevel=3)


def attention_kernel(mode: str, device: torch.device | str | None = None) -> Kernel:
    """The kernel of attention mode ``mode`` (see ``attention_backends.ATTENTION_MODES``), or a
    WanInputError for an unknown mode, a missing package, or a CUDA ``device`` too old for it.
    ``auto`` never fails."""
    if mode == "sdpa":
        return sdpa
    if mode == "auto":
        return AutoKernel()
    if mode not in OPTIONAL_KERNELS:
        raise WanInputError(f"unknown attention_mode {mode!r}; choose one of {', '.join(ATTENTION_MODES)}")
    need = OPTIONAL_KERNELS[mode]
    if importlib.util.find_spec(need.package) is None:
        raise WanInputError(f"attention_mode {mode!r} needs the {need.install} package, which is not installed")
    if device is not None and capability(torch.device(device)) is not None:
        # a CUDA device known at load: refuse an old GPU now (a CPU-loaded model is told at its first call)
        why = unavailable(mode, torch.device(device))
        if why is not None:
            raise WanInputError(f"attention_mode {mode!r} {why}")
    return optional_kernel(mode)
