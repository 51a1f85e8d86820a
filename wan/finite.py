"""Non-finite values (NaN, +-Inf) refused where they enter, before they turn a video black.

One place for the checks every entry point shares: the numbers of the option objects (each
option dataclass calls ``check_fields`` in ``__post_init__``, so the CLI, the Python API and the
nodes all meet the same message), input tensors (``check_tensor``) and the one-pass reduction
(``nonfinite``) that the weight-file check (``weights.finite``) runs per tensor too.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real

import torch

from .errors import WanInputError

# fp8 encodings of NaN/Inf, read from the raw bytes because reductions are not implemented for fp8:
# e4m3fn has no Inf and NaN is S.1111.111 (0x7F/0xFF); e5m2's Inf/NaN have the exponent 11111
# (0x7C-0x7F/0xFC-0xFF). As bytes: the largest unsigned value or the largest signed one.
_FP8_BAD = {torch.float8_e4m3fn: (0xFF, 0x7F), torch.float8_e5m2: (0xFC, 0x7C)}


def nonfinite(t: torch.Tensor) -> str | None:
    """"NaN", "+Inf" or "-Inf" when the floating tensor holds one (NaN first), else None.

    One reading pass (aminmax propagates NaN and never overflows, unlike a sum); other dtypes are
    always finite."""
    if t.numel() == 0:
        return None
    if t.dtype in _FP8_BAD:
        u8_limit, i8_limit = _FP8_BAD[t.dtype]
        raw = t.view(torch.uint8)
        if int(raw.amax()) >= u8_limit or int(raw.view(torch.int8).amax()) >= i8_limit:
            return "NaN" if t.dtype == torch.float8_e4m3fn else "NaN/Inf"
        return None
    if not t.is_floating_point():
        return None
    lo, hi = (float(v) for v in torch.aminmax(t.detach()))
    if math.isnan(lo) or math.isnan(hi):
        return "NaN"
    if hi == math.inf:
        return "+Inf"
    if lo == -math.inf:
        return "-Inf"
    return None


def number_problem(what: str, value) -> str | None:
    """The message for a NaN or infinite real ``value`` of input ``what`` (the nodes' VALIDATE_INPUTS
    return it as it is), else None."""
    if isinstance(value, Real) and not isinstance(value, (bool, int)) and not math.isfinite(float(value)):
        return f"{what} is {float(value)}: give a finite number"
    return None


def check_number(what: str, value) -> None:
    """WanInputError naming ``what`` when ``value`` is a NaN or infinite real number."""
    problem = number_problem(what, value)
    if problem is not None:
        raise WanInputError(problem)


def check_fields(options, label: str = "") -> None:
    """``check_number`` on every number of a dataclass's fields, and on the numbers of its tuple
    and list fields (per-step lists); nested option objects check themselves."""
    prefix = f"{label} " if label else ""
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                check_number(f"{prefix}{f.name}[{i}]", v)
        else:
            check_number(f"{prefix}{f.name}", value)


def check_tensor(what: str, t) -> None:
    """WanInputError naming the input ``what`` when tensor ``t`` holds NaN or Inf."""
    if isinstance(t, torch.Tensor):
        bad = nonfinite(t)
        if bad is not None:
            raise WanInputError(f"{what} contains {bad} values: give finite numbers (a broken upstream node?)")
