"""LoRA loading and application for the Wan DiT.

``load_lora(path)`` parses a file in any dialect of ``lora_formats`` into patches keyed by the
names *as written*; they are mapped onto a model's official names only when matched or applied,
since the same file serves T2V, I2V and VACE models whose sets of layers differ.

``apply_loras(model, chain)`` patches a model for the duration of a run and restores it exactly:

- plain (fp32/bf16/fp16/fp8) tensors are *replaced* by merged copies, W' = W + s * scale * B @ A
  computed in fp32 and cast back (ComfyUI's arithmetic). The original Parameter objects are kept
  and put back on exit, so the loaded base is never written: bit-identical afterwards, and a graph
  without the LoRA can use the same model. Merged weights cost nothing per step, and every use of
  ``.weight`` sees them (the DiT reads some Linear weights directly, e.g. in fp32 heads).
- packed (GGUF / scaled-fp8) Linear weights are never unpacked: a forward hook on the layer adds
  s * scale * (x @ A^T) @ B^T (and x @ diff^T, diff_b) to its output, which is exact for a Linear
  and costs a rank-r matmul instead of re-materialising W every step.

Scale = alpha / rank when the file stores alpha, else 1; times the strength.
"""

from __future__ import annotations

import logging
import os
import warnings
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import WanFileError, WanInputError
from .lora_formats import NameIndex, build_index, guess_foreign, resolve_site, split_key

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Patches


@dataclass(frozen=True)
class LowRank:
    """W += scale * up @ down. up: [out, r]; down: [r, in] or [r, in, *kernel] (conv)."""

    up: torch.Tensor
    down: torch.Tensor
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank

    def fits(self, shape: tuple[int, ...]) -> bool:
        out, inner = self.up.shape[0], self.down[0].numel()
        return (self.up.dim() >= 2 and self.up.shape[1] == self.rank and len(shape) >= 2
                and shape[0] == out and _numel(shape) == out * inner)

    def delta(self, shape, device, strength: float) -> torch.Tensor:
        """strength * scale * up @ down in fp32, shaped like the weight."""
        up = self.up.to(device=device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=device, dtype=torch.float32).flatten(1)
        return ((strength * self.scale) * torch.mm(up, down)).reshape(shape)


@dataclass(frozen=True)
class Diff:
    """A full-rank delta: W += diff (weights, biases, norms, modulation)."""

    diff: torch.Tensor

    def fits(self, shape: tuple[int, ...]) -> bool:
        return tuple(self.diff.shape) == tuple(shape)

    def delta(self, shape, device, strength: float) -> torch.Tensor:
        return strength * self.diff.to(device=device, dtype=torch.float32)


Patch = Union[LowRank, Diff]


@dataclass(frozen=True)
class Entry:
    """One patch as the file names it. slot: 'weight' / 'bias' of a module, or 'param' (itself)."""

    raw: str
    slot: str
    patch: Patch


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


# ----------------------------------------------------------------------------------------------
# Reports


@dataclass
class MatchReport:
    """How a LoRA's patches meet one model's parameters."""

    lora: str
    total: int
    matched: int
    targets: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    dialects: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.matched == self.total and not self.unsupported and not self.unknown_keys

    def examples(self, n: int = 5) -> list[str]:
        return (self.shape_mismatches + self.unmatched)[:n]

    def describe(self) -> str:
        parts = [f"{self.matched} of {self.total} LoRA patches match this Wan DiT"]
        if self.dialects:
            parts.append("formats: " + ", ".join(f"{k} {v}" for k, v in sorted(self.dialects.items())))
        miss = len(self.unmatched) + len(self.shape_mismatches)
        if miss:
            parts.append(f"{miss} not applied, e.g. " + "; ".join(self.examples()))
        if self.unsupported:
            parts.append("unsupported adapter tensors ignored: "
                         + ", ".join(f"{k} x{v}" for k, v in sorted(self.unsupported.items())))
        if self.unknown_keys:
            parts.append(f"{len(self.unknown_keys)} tensors of no known LoRA role ignored, e.g. "
                         + ", ".join(self.unknown_keys[:3]))
        return "; ".join(parts)


# ----------------------------------------------------------------------------------------------
# Loading


def _read(path: str) -> dict[str, torch.Tensor]:
    try:
        from .safetensors import read_safetensors
    except ImportError:  # pragma: no cover - the validated reader is part of the package
        read_safetensors = None
    if read_safetensors is not None:
        return read_safetensors(path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise WanFileError(path, f"not a readable safetensors file ({exc})") from None


def _what_it_is(sd: Mapping[str, torch.Tensor]) -> str:
    try:
        from .detect import guess_kind  # written by the model-detection area; optional here

        kind = guess_kind(sd)
        if kind:
            return str(kind)
    except Exception:  # noqa: BLE001 - a failed guess must not hide the real error
        pass
    keys = list(sd)
    if any(k.endswith("self_attn.q.weight") and "blocks." in k for k in keys):
        return "a full Wan DiT checkpoint (load it as the diffusion model)"
    if any(k.startswith("encoder.block.") or k == "shared.weight" for k in keys):
        return "a T5/UMT5 text encoder"
    if any(k.startswith("vision_model.") for k in keys):
        return "a CLIP vision model"
    if any(k.startswith(("decoder.", "encoder.conv")) for k in keys):
        return "a VAE"
    foreign = guess_foreign(keys)
    if foreign:
        return f"weights of {foreign}"
    return "unknown tensors such as " + ", ".join(keys[:3]) if keys else "an empty file"


@dataclass
class Lora:
    """A parsed LoRA file: patches under the names the file uses, and a default strength."""

    path: str
    entries: list[Entry]
    strength: float = 1.0
    unsupported: dict[str, int] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def __repr__(self) -> str:
        return f"Lora({self.name!r}, {len(self.entries)} patches, strength={self.strength})"

    def resolve(self, index: NameIndex) -> tuple[dict[str, list[Patch]], MatchReport]:
        """Map onto one model: ({official parameter: [patches]}, report)."""
        out: dict[str, list[Patch]] = {}
        report = MatchReport(self.name, len(self.entries), 0, unsupported=dict(self.unsupported),
                             unknown_keys=list(self.unknown_keys))
        dialects: Counter = Counter()
        for e in self.entries:
            hit = resolve_site(e.raw, index)
            target = None
            if hit is not None:
                site, dialect = hit
                if e.slot == "bias":
                    target = site + ".bias"
                elif site + ".weight" in index.params and e.slot == "weight":
                    target = site + ".weight"
                elif site in index.params:
                    target = site
            if target is None or target not in index.params:
                report.unmatched.append(e.raw + ("" if e.slot == "weight" else f" ({e.slot})"))
                continue
            shape = index.params[target]
            if shape is not None and not e.patch.fits(tuple(shape)):
                have = (tuple(e.patch.diff.shape) if isinstance(e.patch, Diff)
                        else (e.patch.up.shape[0], tuple(e.patch.down.shape)))
                report.shape_mismatches.append(f"{e.raw}: patch {have} vs {target} {tuple(shape)}")
                continue
            out.setdefault(target, []).append(e.patch)
            report.targets.append(target)
            dialects[dialect] += 1
            report.matched += 1
        report.dialects = dict(dialects)
        return out, report

    def match(self, params) -> MatchReport:
        """Report how this LoRA meets a model (an nn.Module, {name: tensor/shape} or names)."""
        return self.resolve(build_index(_shapes(params)))[1]


def load_lora(path: str | os.PathLike, strength: float = 1.0) -> Lora:
    """Parse a LoRA safetensors file (any supported dialect). Raises WanFileError for non-LoRAs."""
    path = os.fspath(path)
    sd = _read(path)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    unsupported: Counter = Counter()
    unknown: list[str] = []
    for key, tensor in sd.items():
        parts = split_key(key)
        if parts is None:
            unknown.append(key)
            continue
        raw, role = parts
        if role.startswith("unsupported:"):
            unsupported[role.split(":", 1)[1]] += 1
        elif role != "ignored":
            groups.setdefault(raw, {})[role] = tensor
    entries: list[Entry] = []
    for raw, g in groups.items():
        if "up" in g and "down" in g:
            alpha = None
            if "alpha" in g:
                alpha = float(g["alpha"].float().reshape(-1)[0])
            entries.append(Entry(raw, "weight", LowRank(g["up"], g["down"], alpha)))
        elif "up" in g or "down" in g:
            unknown.append(raw + (".up" if "up" in g else ".down") + " (its pair is missing)")
        if "diff" in g:
            entries.append(Entry(raw, "weight", Diff(g["diff"])))
        if "diff_b" in g:
            entries.append(Entry(raw, "bias", Diff(g["diff_b"])))
        if "diff_m" in g:
            entries.append(Entry(f"{raw}.modulation", "param", Diff(g["diff_m"])))
    if not entries:
        if unsupported:
            raise WanFileError(path, "holds only adapter types this pack does not apply ("
                               + ", ".join(sorted(unsupported)) + "); plain LoRA and diff patches are supported")
        raise WanFileError(path, "is not a LoRA: no lora_A/lora_B, lora_down/lora_up or diff tensors; "
                           f"it looks like {_what_it_is(sd)}")
    return Lora(path, entries, float(strength), dict(unsupported), unknown)


# ----------------------------------------------------------------------------------------------
# Model parameters


def _is_packed(t) -> bool:
    return bool(getattr(t, "is_packed", False))


def _tensors(model: nn.Module) -> dict[str, tuple[nn.Module, str, torch.Tensor]]:
    """name -> (owner module, attribute, tensor) for parameters, buffers and packed attributes."""
    out: dict[str, tuple[nn.Module, str, torch.Tensor]] = {}
    for mname, mod in model.named_modules():
        pre = f"{mname}." if mname else ""
        for attr, t in list(mod._parameters.items()) + list(mod._buffers.items()):
            if t is not None:
                out[pre + attr] = (mod, attr, t)
        for attr in ("weight", "bias"):
            # a PackedLinear exposes its weight as a property holding a (non-Tensor) PackedTensor
            t = getattr(mod, attr, None)
            if (isinstance(t, torch.Tensor) or _is_packed(t)) and pre + attr not in out:
                out[pre + attr] = (mod, attr, t)
    return out


def _shapes(params) -> dict[str, tuple[int, ...] | None]:
    if isinstance(params, nn.Module):
        return {k: tuple(t.shape) for k, (_, _, t) in _tensors(params).items()}
    if isinstance(params, Mapping):
        return {k: (tuple(v.shape) if hasattr(v, "shape") else (None if v is None else tuple(v)))
                for k, v in params.items()}
    return {k: None for k in params}


# ----------------------------------------------------------------------------------------------
# Application

LoraChain = Sequence[Union[Lora, tuple[Lora, float]]]


def chain_add(chain: LoraChain | None, lora: Lora, strength: float | None = None) -> tuple:
    """A new chain with ``lora`` appended (upstream chains are never mutated)."""
    return tuple(chain or ()) + ((lora, lora.strength if strength is None else float(strength)),)


def _normalise(loras) -> list[tuple[Lora, float]]:
    if isinstance(loras, Lora):
        loras = [loras]
    out = []
    for item in loras or ():
        if isinstance(item, Lora):
            out.append((item, item.strength))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], Lora):
            out.append((item[0], float(item[1])))
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
    """Forward hook adding the patches' output to a packed Linear: y += x @ dW^T + db."""

    def __init__(self, weight: list[tuple[Patch, float]], bias: list[tuple[Patch, float]]):
        self.weight = weight
        self.bias = bias
        self._cache: dict[tuple, list] = {}

    def _cast(self, device, dtype) -> list:
        key = (device, dtype)
        if key not in self._cache:
            terms = []
            for p, s in self.weight:
                if isinstance(p, LowRank):
                    # fold strength * scale into `up` once, in fp32, before casting
                    up = (p.up.to(device, torch.float32).flatten(1) * (s * p.scale)).to(dtype)
                    terms.append(("lr", p.down.to(device, dtype).flatten(1), up))
                else:
                    terms.append(("w", (p.diff.to(device, torch.float32) * s).to(dtype), None))
            for p, s in self.bias:
                terms.append(("b", (p.diff.to(device, torch.float32) * s).to(dtype), None))
            self._cache[key] = terms
        return self._cache[key]

    def __call__(self, module, args, output):
        x = args[0]
        y = output
        for kind, a, b in self._cast(x.device, x.dtype):
            if kind == "lr":
                y = y + F.linear(F.linear(x, a), b).to(y.dtype)
            elif kind == "w":
                y = y + F.linear(x, a).to(y.dtype)
            else:
                y = y + a.to(y.dtype)
        return y


_ACTIVE: "weakref.WeakKeyDictionary[nn.Module, LoraHandle]" = weakref.WeakKeyDictionary()


class LoraHandle:
    """Patches applied to one model; ``remove()`` (or leaving the ``with`` block) restores it."""

    def __init__(self, model: nn.Module, reports: list[MatchReport]):
        self.model = model
        self.reports = reports
        self.merged: list[str] = []
        self.runtime: list[str] = []
        self._swapped: list[tuple[nn.Module, str, str, torch.Tensor]] = []
        self._hooks: list = []

    def __enter__(self) -> "LoraHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @property
    def active(self) -> bool:
        return _ACTIVE.get(self.model) is self

    def remove(self) -> None:
        """Put every original tensor back (the very objects, so the base is bit-identical)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
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
            old = mod._parameters[attr]
            self._swapped.append((mod, "_parameters", attr, old))
            mod._parameters[attr] = nn.Parameter(new, requires_grad=False)
        elif attr in mod._buffers:
            self._swapped.append((mod, "_buffers", attr, mod._buffers[attr]))
            mod._buffers[attr] = new
        else:
            self._swapped.append((mod, "__dict__", attr, getattr(mod, attr)))
            setattr(mod, attr, new)


def apply_loras(model: nn.Module, loras, *, warn: bool = True) -> LoraHandle:
    """Apply a chain of LoRAs to ``model`` until the returned handle is removed.

    ``loras``: a Lora, or a sequence of Lora / (Lora, strength); a bare Lora uses its own strength.
    Raises WanFileError for a LoRA none of whose patches fit this model; warns (and logs) when
    only some do. Use as ``with apply_loras(dit, chain) as h: ...``.
    """
    chain = _normalise(loras)
    if model in _ACTIVE:
        raise WanInputError("this model already has LoRAs applied; remove that handle first")
    tensors = _tensors(model)
    index = build_index({k: tuple(t.shape) for k, (_, _, t) in tensors.items()})
    per_target: dict[str, list[tuple[Patch, float]]] = {}
    reports = []
    for lora, strength in chain:
        patches, report = lora.resolve(index)
        reports.append(report)
        if report.matched == 0:
            raise WanFileError(lora.path, _no_match_message(lora, report))
        if not report.complete and warn:
            msg = f"LoRA {lora.name}: {report.describe()}"
            warnings.warn(msg, stacklevel=2)
            log.warning(msg)
        for target, plist in patches.items():
            per_target.setdefault(target, []).extend((p, strength) for p in plist)

    handle = LoraHandle(model, reports)
    runtime: dict[nn.Module, tuple[list, list]] = {}
    try:
        for target, plist in per_target.items():
            mod, attr, t = tensors[target]
            if _is_packed(t):
                if attr != "weight" or len(t.shape) != 2:
                    raise WanInputError(f"{target}: patching a packed {attr} of shape {tuple(t.shape)} "
                                        "is not supported (only packed Linear weights)")
                w, b = runtime.setdefault(mod, ([], []))
                (w if attr == "weight" else b).extend(plist)
                handle.runtime.append(target)
            else:
                handle._swap(mod, attr, merge_weight(t, plist))
                handle.merged.append(target)
        for mod, (w, b) in runtime.items():
            handle._hooks.append(mod.register_forward_hook(_RuntimeDelta(w, b)))
    except BaseException:
        handle.remove()
        raise
    _ACTIVE[model] = handle
    return handle


def _no_match_message(lora: Lora, report: MatchReport) -> str:
    if report.shape_mismatches and not report.unmatched:
        return (f"0 of {report.total} LoRA patches fit this Wan DiT: the layer names match but the "
                f"shapes do not ({report.shape_mismatches[0]}); it is a LoRA for another Wan size "
                "or variant (e.g. 1.3B vs 14B, 5B)")
    raws = [e.raw for e in lora.entries]
    foreign = guess_foreign(raws)
    what = f"it looks like a LoRA for {foreign}" if foreign else "it was made for another model"
    return (f"0 of {report.total} LoRA patches match this Wan DiT; {what} "
            f"(e.g. {', '.join(raws[:3])})")
