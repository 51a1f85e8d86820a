"""Hostile claims in headers: integers of thousands of digits, huge, zero and negative dimensions,
floats where integers belong, deep nesting, in safetensors and GGUF headers and in the shapes a DiT
is sized from. Whatever a header claims, reading and loading only ever raise WanFileError (naming
the file), never an error of Python, json or torch. Hypothesis: 150 + 100 + 100 examples.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gguf_samples import positions, write_sample
from tiny_models import write_dit
from wan.errors import WanFileError
from wan.job.load import load_dit
from wan.models.dit.model import WanDiT
from wan.models.dit.shapes import config_from_shapes
from wan.weights.gguf import read_gguf
from wan.weights.loader import read_header

_DIR = Path(tempfile.mkdtemp(prefix="claims_fuzz_"))
_DIT = write_dit(_DIR / "dit.safetensors")
_SHAPES, _ = read_header(_DIT)

huge_ints = st.sampled_from([0, 1, -1, 2**31, 2**40, 2**48, 2**63, 2**64, 2**200, 10**4000])  # json.dumps itself refuses more digits
claims = st.one_of(huge_ints, st.integers(), st.floats(allow_nan=True), st.just(None), st.text(max_size=5),
                   st.lists(huge_ints, max_size=3))


def _raw_header(name: str, dtype, shape, offsets) -> bytes:
    text = json.dumps({name: {"dtype": dtype, "shape": shape, "data_offsets": offsets}})
    return text.encode()


def _only_ours(path: Path, read):
    try:
        read(path)
    except WanFileError as exc:
        assert path.name in str(exc)


@settings(max_examples=150, deadline=3000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.one_of(st.just("F32"), claims), shape=st.one_of(st.lists(claims, max_size=6), claims),
       offsets=st.one_of(st.lists(claims, max_size=3), claims), nest=st.integers(0, 3000))
def test_safetensors_header_claims_give_only_wan_file_errors(dtype, shape, offsets, nest):
    raw = _raw_header("w", dtype, shape, offsets)
    if nest:  # deep nesting in place of the dtype
        raw = raw.replace(b'"dtype": ', b'"dtype": ' + b"[" * nest, 1).replace(b"}}", b"]" * nest + b"}}", 1)
    path = _DIR / "claims.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    _only_ours(path, read_header)


def test_a_5000_digit_integer_is_a_file_error():
    raw = b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}'
    path = _DIR / "digits.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 4)
    with pytest.raises(WanFileError, match=r"digits.safetensors: header is not valid JSON .*4300 digits"):
        read_header(path)


dims = st.sampled_from([0, 1, 3, 2**20 + 1, 2**31, 2**40, 2**62])


@settings(max_examples=100, deadline=3000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(_SHAPES)), shape=st.lists(dims, min_size=1, max_size=5))
def test_dit_sized_from_claimed_shapes_gives_only_wan_file_errors(name, shape):
    # a header's shapes, as read_header returns them: the config and the (meta) model are sized from
    # them before any tensor is read, so here a huge or zero dimension must be refused, not built
    claimed = dict(_SHAPES)
    claimed[name] = tuple(shape)
    try:
        cfg = config_from_shapes(claimed, "claimed.safetensors")
        with torch.device("meta"):
            WanDiT(cfg)
    except WanFileError as exc:
        assert str(exc).startswith("claimed.safetensors: ")


def test_patch_embedding_with_a_zero_and_a_huge_dimension_is_refused_by_name(tmp_path):
    header, offset = {}, 0
    for k, shape in _SHAPES.items():
        n = int(np.prod(shape)) * 2
        if k.endswith("patch_embedding.weight"):
            shape, n = (2**40, 0, 1, 2, 2), 0
        header[k] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path = tmp_path / "pe.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
    with pytest.raises(WanFileError, match=r"pe.safetensors: patch_embedding.weight has shape \(1099511627776, 0"):
        load_dit(path)


_GGUF = write_sample(_DIR / "base.gguf")
_GGUF_BYTES = _GGUF.read_bytes()
_INFOS = positions(_GGUF)["infos"]


@settings(max_examples=100, deadline=3000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(_INFOS) - 1), dim=st.integers(0, 4), value=st.sampled_from(
    [0, 1, 2**20 + 1, 2**32, 2**40, 2**40 + 1, 2**63, 2**64 - 1]))
def test_gguf_dimension_claims_give_only_wan_file_errors(which, dim, value):
    info = _INFOS[which]
    raw = bytearray(_GGUF_BYTES)
    n_dims = (info["type_at"] - info["dims_at"]) // 8
    struct.pack_into("<Q", raw, info["dims_at"] + 8 * min(dim, n_dims - 1), value)
    path = _DIR / "dims.gguf"
    path.write_bytes(bytes(raw))
    _only_ours(path, read_gguf)
