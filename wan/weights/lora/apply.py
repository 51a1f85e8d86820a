"""Applying parsed LoRAs to a Wan DiT for the duration of a run, and restoring it exactly.

``apply_loras(model, chain)`` returns a handle (a context manager). Per patched tensor:

- plain tensors (fp32/bf16/fp16/fp8 weights, biases, norm gains, modulation) get merged values,
  W' = W + s * scale * B @ A, computed in fp32 and cast back (ComfyUI's arithmetic). Every use of
  ``.weight`` then sees them (the DiT reads some Linear weights directly, in fp32 heads) and a
  step costs nothing extra. Two ways to hold them, chosen per tensor by ``merge``:

  * ``"copy"``: the Parameter is replaced by a merged copy and the original object is put back on
    exit. The base is never written, so a graph without the LoRA can share the model, and a
    memory-mapped file is never touched. Costs one extra copy of each patched tensor, on its device.
  * ``"inplace"``: the merged values are written into the tensor after its original values were
    copied to CPU, and copied back on exit (bit-exact: same dtype). No extra accelerator memory,
    which is what a large bf16 model on a GPU needs; the backup lives in host RAM (as ComfyUI's).
  * ``"auto"`` (default): in place for tensors on an accelerator, a copy for tensors on the CPU.

- packed (GGUF / scaled-fp8) Linear weights are never unpacked: a forward hook on the layer adds
  s * scale * (x @ A^T) @ B^T (and s * x @ diff^T) to its output, which is exact for a Linear and
  costs a rank-r matmul per call instead of re-materialising and patching W every step.
"""

from __future__ import annotations

import weakref
from typing import Iterable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import WanFileError, WanInputError
from ...finite import nonfinite
from ...notices import notify
from .parse import Lora, LowRank, MatchReport, Patch, _is_packed, _tensors, check_strength
from .check import no_match_message
from .formats import build_index


LoraChain = Sequence[Union[Lora, tuple[Lora, float]]]
MERGE_MODES = ("auto", "copy", "inplace")


def chain_add(chain: LoraChain | None, lora: Lora, strength: float | None = None) -> tuple:
    """A new chain with ``lora`` appended (upstream chains are never mutated)."""
    return tuple(chain or ()) + ((lora, lora.strength if strength is None else check_strength(lora, strength)),)


def _normalise(loras) -> list[tuple[Lora, float]]:
    if isinstance(loras, Lora):
        loras = [loras]
    out = []
    for item in loras or ():
        if isinstance(item, Lora):
            out.append((item, item.strength))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Lora):
            out.append((item[0], check_strength(item[0], item[1])))
        else:
            raise WanInputError(f"expected a Lora or (Lora, strength), got {type(item).__name__}")
    return out


def merge_weight(weight: torch.Tensor, patches: Iterable[tuple[Patch, float]]) -> torch.Tensor:
    """weight + sum(strength * delta) computed in fp32 and cast back to the weight's dtype."""
    w = weight.detach().to(torch.float32, copy=True)
    for patch, strength in patches:
        if strength != 0.0:
            w += patch.delta(w.shape, w.device, strength)
    return w.to(weight.dtype)


class _RuntimeDelta:
    """Forward hook of a packed Linear: y += sum(s * scale * (x @ A^T) @ B^T) + sum(s * x @ D^T)."""

    def __init__(self, patches: list[tuple[Patch, float]]):
        self.patches = patches
        self._cache: dict[tuple, list] = {}

    def _cast(self, device, dtype) -> list:
        # one cast per device/dtype, kept while the handle lives (LoRA tensors are small)
        key = (device, dtype)
        if key not in self._cache:
            terms = []
            for p, s in self.patches:
                if isinstance(p, LowRank):
                    up = (p.up.to(device, torch.float32).flatten(1) * (s * p.scale)).to(dtype)
                    terms.append((p.down.to(device, dtype).flatten(1), up))
                else:
                    terms.append(((p.diff.to(device, torch.float32) * s).to(dtype), None))
            self._cache[key] = terms
        return self._cache[key]

    def __call__(self, module, args, output):
        x = args[0]
        terms = self._cast(x.device, x.dtype)
        if output.dtype != x.dtype or not output.is_contiguous():
            y = output
            for a, b in terms:
                h = F.linear(x, a)
                y = y + (h if b is None else F.linear(h, b)).to(y.dtype)
            return y
        # Accumulate with the GEMM itself (beta=1): no output-sized temporaries. In place on the
        # layer's fresh output when no graph is recorded.
        y = output.reshape(-1, output.shape[-1])
        inplace = not (torch.is_grad_enabled() and (y.requires_grad or x.requires_grad))
        x2 = x.reshape(-1, x.shape[-1])
        for a, b in terms:
            lhs, rhs = (x2, a.t()) if b is None else (F.linear(x2, a), b.t())
            y = y.addmm_(lhs, rhs) if inplace else torch.addmm(y, lhs, rhs)
        return y.view(output.shape)


_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, LoraHandle]" = weakref.WeakKeyDictionary()


class LoraHandle:
    """LoRAs applied to one model; ``remove()`` (or leaving the ``with`` block) restores it.

    ``reports``: one MatchReport per LoRA of the chain; ``merged`` / ``runtime``: the parameter
    names patched by merging and by forward hooks.
    """

    def __init__(self, model: nn.Module, reports: list[MatchReport]):
        self.model = model
        self.reports = reports
        self.merged: list[str] = []
        self.runtime: list[str] = []
        self._swapped: list[tuple[nn.Module, str, str, torch.Tensor]] = []
        self._written: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._hooks: list = []

    def __enter__(self) -> "LoraHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @property
    def active(self) -> bool:
        return _ACTIVE.get(self.model) is self

    def remove(self) -> None:
        """Restore every patched tensor: original objects put back, overwritten values copied back."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        with torch.no_grad():
            for tensor, backup in reversed(self._written):
                tensor.copy_(backup)
        self._written.clear()
        for mod, table, attr, original in reversed(self._swapped):
            if table == "__dict__":
                setattr(mod, attr, original)
            else:
                getattr(mod, table)[attr] = original
        self._swapped.clear()
        if _ACTIVE.get(self.model) is self:
            del _ACTIVE[self.model]

    def _swap(self, mod: nn.Module, attr: str, new: torch.Tensor) -> None:
        if attr in mod._parameters:
            self._swapped.append((mod, "_parameters", attr, mod._parameters[attr]))
            mod._parameters[attr] = nn.Parameter(new, requires_grad=False)
        elif attr in mod._buffers:
            self._swapped.append((mod, "_buffers", attr, mod._buffers[attr]))
            mod._buffers[attr] = new
        else:
            self._swapped.append((mod, "__dict__", attr, getattr(mod, attr)))
            setattr(mod, attr, new)

    def _write(self, tensor: torch.Tensor, new: torch.Tensor) -> None:
        backup = tensor.detach().to("cpu", copy=True)
        self._written.append((tensor, backup))
        with torch.no_grad():
            tensor.copy_(new)


def apply_loras(model: nn.Module, loras, *, merge: str = "auto", warn: bool = True) -> LoraHandle:
    """Apply a chain of LoRAs to ``model`` until the returned handle is removed.

    ``loras``: a Lora, or a sequence of Lora / (Lora, strength); a bare Lora uses its own strength.
    Several LoRAs stack (their deltas add). Raises WanFileError for a LoRA none of whose patches fit
    this model; warns (and logs) when only some do. ``merge``: see the module docstring.
    Use as ``with apply_loras(dit, chain) as h: ...``; only one handle per model at a time.
    """
    if merge not in MERGE_MODES:
        raise WanInputError(f"merge={merge!r}; expected one of {MERGE_MODES}")
    chain = _normalise(loras)
    if model in _ACTIVE:
        raise WanInputError("this model already has LoRAs applied; remove that handle first")
    tensors = _tensors(model)
    index = build_index({k: tuple(t.shape) for k, (_, _, t) in tensors.items()})
    per_target: dict[str, list[tuple[Patch, float]]] = {}
    sources: dict[str, list[str]] = {}  # target -> the LoRA files patching it, for errors
    reports = []
    for lora, strength in chain:
        patches, report = lora.resolve(index)
        reports.append(report)
        if report.matched == 0:
            raise WanFileError(lora.path, no_match_message(lora, report))
        if not report.complete and warn:
            msg = f"LoRA {lora.name}: {report.describe()}"
            notify(msg)
        if strength == 0.0:
            continue  # checked, but nothing to apply
        for target, plist in patches.items():
            per_target.setdefault(target, []).extend((p, strength) for p in plist)
            sources.setdefault(target, []).append(lora.name)

    handle = LoraHandle(model, reports)
    runtime: dict[nn.Module, list] = {}
    try:
        for target, plist in per_target.items():
            mod, attr, t = tensors[target]
            if _is_packed(t):
                if attr != "weight" or len(t.shape) != 2:
                    raise WanInputError(f"{target}: patching a packed {attr} of shape {tuple(t.shape)} "
                                        "is not supported (only packed Linear weights)")
                runtime.setdefault(mod, []).extend(plist)
                handle.runtime.append(target)
                continue
            merged = merge_weight(t, plist)
            bad = nonfinite(merged)
            if bad is not None:
                raise WanInputError(f"LoRA {' + '.join(sources[target])} makes {target} {bad} in "
                                    f"{str(merged.dtype).replace('torch.', '')}: lower the strength")
            if merge == "inplace" or (merge == "auto" and t.device.type not in ("cpu", "meta")):
                handle._write(t, merged)
            else:
                handle._swap(mod, attr, merged)
            handle.merged.append(target)
        for mod, plist in runtime.items():
            handle._hooks.append(mod.register_forward_hook(_RuntimeDelta(plist)))
    except BaseException:
        handle.remove()
        raise
    _ACTIVE[model] = handle
    return handle


def device_bytes(model: nn.Module, loras, itemsize: int = 2) -> int:
    """Bytes a chain of LoRAs holds on ``model``'s compute device while applied, beside its weights:
    the factors (and full deltas) of packed Linear layers, cast by their hooks to the compute dtype
    (``itemsize`` bytes) and kept while the handle lives. Merged tensors add nothing there: on an
    accelerator "auto" writes them in place (the backup is in host RAM). For the memory plan."""
    chain = [(lora, s) for lora, s in _normalise(loras) if s != 0.0]
    if not chain:
        return 0
    tensors = _tensors(model)
    index = build_index({k: tuple(t.shape) for k, (_, _, t) in tensors.items()})
    total = 0
    for lora, _strength in chain:
        patches, _report = lora.resolve(index)
        for target, plist in patches.items():
            if _is_packed(tensors[target][2]):
                total += sum((p.up.numel() + p.down.numel() if isinstance(p, LowRank) else p.diff.numel())
                             * itemsize for p in plist)
    return total
