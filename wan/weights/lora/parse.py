"""LoRA files for the Wan DiT: reading, parsing and matching against a model.

``load_lora(path)`` parses a file in any dialect of ``lora_formats`` into patches keyed by the
names *as written*; they are mapped onto a model's official names only when matched or applied
(``Lora.match`` / ``apply_loras``), since one file serves T2V, I2V and VACE models whose sets of
layers differ. Patches: LowRank (W += scale * up @ down, scale = alpha / rank when the file stores
alpha, else 1) and Diff (full-rank deltas of weights, biases, norm gains and modulation).
Applying them lives in ``lora_apply`` and is re-exported here.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Union

import torch
import torch.nn as nn

from ...errors import WanFileError, WanInputError
from ...finite import check_number
from ...models.identify import identify
from .fit import Placement, notes
from .formats import NameIndex, build_index, guess_foreign, resolve_site, split_key
from ..finite import check_finite_weights
from ..safetensors import read_safetensors

# The largest change a LoRA may make to one weight value, strength included. Wan's weights are of
# order 1; a change past fp16's range (the narrowest dtype a Wan model computes in) comes from no
# training run: it is a broken alpha or strength, and would turn every frame black.
MAX_DELTA = 65504.0

# ----------------------------------------------------------------------------------------------
# Patches


@dataclass(frozen=True, eq=False)
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

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the weight this patch makes (a Linear's [out, in], a conv's kernel included)."""
        return (int(self.up.shape[0]),) + tuple(int(s) for s in self.down.shape[1:])

    def fits(self, shape: tuple[int, ...]) -> bool:
        out, inner = self.up.shape[0], self.down[0].numel()
        return (self.up.dim() >= 2 and self.up.shape[1] == self.rank and len(shape) >= 2
                and shape[0] == out and _numel(shape) == out * inner)

    @property
    def reach(self) -> float:
        """An upper bound of |scale * up @ down| over its elements (rank * max|up| * max|down|)."""
        return abs(self.scale) * self.rank * _amax(self.up) * _amax(self.down)

    def delta(self, shape, device, strength: float) -> torch.Tensor:
        """strength * scale * up @ down in fp32, shaped like the weight."""
        up = self.up.to(device=device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=device, dtype=torch.float32).flatten(1)
        return ((strength * self.scale) * torch.mm(up, down)).reshape(shape)


@dataclass(frozen=True, eq=False)
class Diff:
    """A full-rank delta: W += diff (weights, biases, norms, modulation)."""

    diff: torch.Tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.diff.shape)

    def fits(self, shape: tuple[int, ...]) -> bool:
        return tuple(self.diff.shape) == tuple(shape)

    @property
    def reach(self) -> float:
        """The largest |change| it makes to a value."""
        return _amax(self.diff)

    def delta(self, shape, device, strength: float) -> torch.Tensor:
        return strength * self.diff.to(device=device, dtype=torch.float32)


def _amax(t: torch.Tensor) -> float:
    return float(t.detach().abs().amax()) if t.numel() else 0.0


Patch = Union[LowRank, Diff]


@dataclass(frozen=True, eq=False)
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
    """How a LoRA's patches meet one model's parameters.

    ``notes``: plain sentences on why patches do not fit (another width, T2V vs I2V input, the
    Wan 2.1 CLIP image path, more blocks); ``expert``: which model it was matched against when
    that is one expert of a pair ("the low-noise expert"), named in ``describe``.
    """

    lora: str
    total: int
    matched: int
    targets: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    dialects: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    expert: str | None = None

    @property
    def complete(self) -> bool:
        return self.matched == self.total and not self.unsupported and not self.unknown_keys

    def examples(self, n: int = 5) -> list[str]:
        return (self.shape_mismatches + self.unmatched)[:n]

    def describe(self) -> str:
        share = f"{100 * self.matched // self.total}%" if self.total else "0%"
        parts = [f"{self.matched} of {self.total} LoRA patches match {self.expert or 'this Wan DiT'} ({share})"]
        parts += self.notes
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
    # the validated reader: a truncated or non-safetensors file becomes a WanFileError naming it

    return read_safetensors(path)


def _what_it_is(sd: Mapping[str, torch.Tensor]) -> str:
    keys = list(sd)
    who = identify(sd)
    if who.role == "dit":
        return "a full Wan DiT checkpoint (load it as the diffusion model)"
    if who.role not in (None, "lora"):
        return who.detail
    foreign = guess_foreign(keys)
    if foreign:
        return f"weights of {foreign}"
    return "unknown tensors such as " + ", ".join(keys[:3]) if keys else "an empty file"


@dataclass(eq=False)
class Lora:
    """A parsed LoRA file: patches under the names the file uses, and a default strength.

    Compared and hashed by identity, so nodes can key caches and chains on it.
    """

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

    @functools.cached_property
    def reach(self) -> float:
        """The largest change to one weight value any of its patches makes at strength 1 (a bound)."""
        return max((e.patch.reach for e in self.entries), default=0.0)

    def resolve(self, index: NameIndex, expert: str | None = None) -> tuple[dict[str, list[Patch]], MatchReport]:
        """Map onto one model: ({official parameter: [patches]}, report)."""
        out: dict[str, list[Patch]] = {}
        report = MatchReport(self.name, len(self.entries), 0, unsupported=dict(self.unsupported),
                             unknown_keys=list(self.unknown_keys), expert=expert)
        dialects: Counter = Counter()
        placements: list[Placement] = []
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
                placements.append(Placement(e.raw, None, e.patch.shape, False))
                continue
            shape = index.params[target]
            fits = shape is None or e.patch.fits(tuple(shape))
            placements.append(Placement(e.raw, target, e.patch.shape, fits))
            if not fits:
                have = (tuple(e.patch.diff.shape) if isinstance(e.patch, Diff)
                        else (e.patch.up.shape[0], tuple(e.patch.down.shape)))
                report.shape_mismatches.append(f"{e.raw}: patch {have} vs {target} {tuple(shape)}")
                continue
            out.setdefault(target, []).append(e.patch)
            report.targets.append(target)
            dialects[dialect] += 1
            report.matched += 1
        report.dialects = dict(dialects)
        report.notes = notes(placements, index.params)
        return out, report

    def match(self, params, expert: str | None = None) -> MatchReport:
        """Report how this LoRA meets a model (an nn.Module, {name: tensor/shape} or names);
        ``expert`` names it in the report when it is one expert of a pair."""
        return self.resolve(build_index(_shapes(params)), expert)[1]


def load_lora(path: str | os.PathLike, strength: float = 1.0) -> Lora:
    """Parse a LoRA safetensors file (any supported dialect). Raises WanFileError for non-LoRAs."""
    path = os.fspath(path)
    sd = _read(path)
    check_finite_weights(sd, path)
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
            if g["down"].dim() == 0 or g["down"].shape[0] == 0:
                raise WanFileError(path, f"LoRA pair {raw!r} has rank 0 (an empty down/A matrix)")
            alpha = None
            if "alpha" in g:
                if g["alpha"].numel() == 0:
                    raise WanFileError(path, f"LoRA alpha of {raw!r} is empty")
                alpha = float(g["alpha"].float().reshape(-1)[0])
                if not math.isfinite(alpha):
                    raise WanFileError(path, f"LoRA alpha of {raw!r} is {alpha}, not a finite number")
            patch = LowRank(g["up"], g["down"], alpha)
            if not patch.reach <= MAX_DELTA:
                scale = "no alpha" if alpha is None else f"alpha {alpha:g}"
                raise WanFileError(path, f"LoRA pair {raw!r}: {scale} at rank {patch.rank} makes changes of "
                                   f"up to {patch.reach:.3g} to a weight (at most {MAX_DELTA:g} is plausible): "
                                   "a broken alpha")
            entries.append(Entry(raw, "weight", patch))
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
    for e in entries:
        if isinstance(e.patch, Diff) and not e.patch.reach <= MAX_DELTA:
            raise WanFileError(path, f"LoRA diff {e.raw!r} changes a weight by up to {e.patch.reach:.3g} (at most "
                               f"{MAX_DELTA:g} is plausible): a broken file")
    lora = Lora(path, entries, 1.0, dict(unsupported), unknown)
    lora.strength = check_strength(lora, strength)
    return lora


def check_strength(lora: Lora, strength) -> float:
    """``strength`` as a float, or WanInputError naming the LoRA when it is not finite or scales its
    changes past ``MAX_DELTA``."""
    check_number(f"strength of LoRA {lora.name}", strength)
    strength = float(strength)
    if abs(strength) * lora.reach > MAX_DELTA:
        raise WanInputError(f"strength {strength:g} of LoRA {lora.name} makes changes of up to "
                            f"{abs(strength) * lora.reach:.3g} to a weight (at most {MAX_DELTA:g} is plausible)")
    return strength


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


__all__ = ["MAX_DELTA", "Diff", "Lora", "LowRank", "MatchReport", "check_strength", "load_lora"]
