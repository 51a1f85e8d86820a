"""The check every loader makes before an assign-load: the file's tensors against the model's own."""

from __future__ import annotations

import os
import re

from torch import nn

from ..errors import WanFileError

_BLOCK = re.compile(r"^((?:\w+\.)*?\w*blocks\.\d+)\.")
_LISTED = 6  # names quoted per problem; the rest are counted
# No released model has a width, vocabulary or kernel dimension near 2^20; a larger one read from a
# header is a hostile claim that would make even a meta-device model overflow its size arithmetic.
MAX_MODEL_DIM = 1 << 20


def shape_of(value) -> tuple[int, ...]:
    """The logical shape of a tensor, a packed tensor or a shape read from a header."""
    return tuple(value) if isinstance(value, (tuple, list)) else tuple(value.shape)


def model_dims(value, name: str, path, ndim: int | None = None) -> tuple[int, ...]:
    """The shape of tensor ``name`` after checking it can size a model: ``ndim`` dimensions (when
    given), each 1..MAX_MODEL_DIM. A zero or huge dimension is refused before anything is built."""
    shape = shape_of(value)
    if ndim is not None and len(shape) != ndim:
        raise WanFileError(path, f"{name} has shape {shape}, expected {ndim} dimensions")
    if not shape or not all(1 <= d <= MAX_MODEL_DIM for d in shape):
        raise WanFileError(path, f"{name} has shape {shape}: every dimension of a model's tensor must be "
                           f"1..{MAX_MODEL_DIM}")
    return shape


def block_count(keys, prefix: str, path, what: str) -> int:
    """How many blocks ``prefix``0., ``prefix``1., ... the names claim (the highest number + 1),
    refused unless the names back the claim: the blocks present must hold at least half the
    tensors that many blocks need (counted as the fullest block holds them). A model is only
    built for a count the file backs; a lone far index (blocks.99999.*) is refused at once, while
    a partial file with a few blocks or tensors missing is left to ``check_tensors``, which names
    each one."""
    rx = re.compile(re.escape(prefix) + r"(\d+)\.(.+)$")
    blocks: dict[int, set[str]] = {}
    for k in keys:
        if m := rx.match(k):
            blocks.setdefault(int(m.group(1)), set()).add(m.group(2))
    if not blocks:
        return 0
    n = max(blocks) + 1
    per_block = max(len(v) for v in blocks.values())
    present = sum(len(v) for v in blocks.values())
    if 2 * present < n * per_block:
        raise WanFileError(path, f"{what}: the highest block number, {prefix}{n - 1}, claims {n} blocks, "
                           f"but the file holds tensors of {len(blocks)} blocks ({present} of the "
                           f"{n * per_block} that {n} blocks need): a stray tensor, or a partial file")
    return n


def _listing(names: list[str], model_names=()) -> str:
    """Names, with a block whose tensors (among ``model_names``) are all in ``names`` said once."""
    per_block: dict[str, int] = {}
    for k in model_names:
        if m := _BLOCK.match(k):
            per_block[m.group(1)] = per_block.get(m.group(1), 0) + 1
    listed: dict[str, int] = {}
    for k in names:
        if m := _BLOCK.match(k):
            listed[m.group(1)] = listed.get(m.group(1), 0) + 1
    whole = {b for b, n in listed.items() if n == per_block.get(b)}
    items: list[str] = []
    said: set[str] = set()
    for k in names:
        m = _BLOCK.match(k)
        if m is None or m.group(1) not in whole:
            items.append(k)
        elif m.group(1) not in said:
            said.add(m.group(1))
            items.append(f"{m.group(1)}.* (all {per_block[m.group(1)]})")
    more = f" and {len(items) - _LISTED} more" if len(items) > _LISTED else ""
    return ", ".join(items[:_LISTED]) + more


def check_tensors(model: nn.Module, state_dict: dict, path: str | os.PathLike | None, what: str,
                  prefix: str = "") -> None:
    """Raise WanFileError naming missing, unknown, wrongly shaped and non-float tensors.

    ``model`` may live on the meta device; only names, (logical) shapes and float-ness are compared,
    so packed tensors are checked like any other. ``what`` names the model in the message and
    ``prefix`` is the wrapper the file keeps the names under, so the message quotes the file's own
    names. A truncated file never gets here (the readers check every tensor's bytes against the
    header), so missing tensors mean a partial save or a file of another model.
    """
    expected = model.state_dict()
    missing = [prefix + k for k in expected if k not in state_dict]
    unexpected = [prefix + k for k in state_dict if k not in expected]
    present = [(k, t, state_dict[k]) for k, t in expected.items() if k in state_dict]
    shapes = [f"{prefix}{k} has shape {shape_of(v)}, expected {tuple(t.shape)}"
              for k, t, v in present if shape_of(v) != tuple(t.shape)]
    dtypes = [f"{prefix}{k} has dtype {v.dtype}, expected floating point" for k, t, v in present
              if t.is_floating_point() and not getattr(v, "is_packed", False) and not v.is_floating_point()]
    problems = []
    if missing:
        listing = _listing(missing, [prefix + k for k in expected])
        problems.append(f"incomplete: {len(missing)} of {len(expected)} tensors missing: {listing}")
    if unexpected:
        problems.append(f"unexpected tensor{'s' if len(unexpected) > 1 else ''} {_listing(unexpected)}")
    if shapes:
        problems.append(f"wrong shape: {'; '.join(shapes[:_LISTED])}")
    if dtypes:
        problems.append(f"wrong dtype: {'; '.join(dtypes[:_LISTED])}")
    if problems:
        raise WanFileError(path, f"{what} does not match its own names and shapes: {'; '.join(problems)}. "
                                 "A partial save, or the file of another model size?")
