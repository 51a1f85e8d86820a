"""Hostile LoRA files: mutated safetensors headers (dtypes, shapes, offsets, lengths, truncation) and
well-formed files with hostile tensors (rank mismatches, wrong dtypes and ranks, NaN/inf/vector
alpha, unpaired halves). Every file either loads and applies to a tiny Wan DiT, or raises one of our
errors (WanFileError naming the file, WanInputError); the base model's weights are bit-identical
after the LoRA is removed; nothing is ever unpickled (torch.load / pickle are patched to fail).

Hypothesis budget: 80 header mutations and 40 tensor mutations, 3 s deadline each.
"""

from __future__ import annotations

import json
import pickle
import struct
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from tiny_models import dit_config, dit_state, write_lora
from wan.errors import WanError, WanFileError
from wan.models.dit.model import WanDiT
from wan.weights.lora import apply_loras, load_lora

_DIR = Path(tempfile.mkdtemp(prefix="lora_fuzz_"))
_BASE = write_lora(_DIR / "base.safetensors", "t2v_1_3b", rank=4, blocks=[0, 1])
_RAW = _BASE.read_bytes()
(_N,) = struct.unpack("<Q", _RAW[:8])
_HEADER = json.loads(_RAW[8:8 + _N])
_DATA = _RAW[8 + _N:]
_KEYS = sorted(k for k in _HEADER if k != "__metadata__")
OUTCOMES: Counter = Counter()  # for the reliability figures: how the hostile files ended


@pytest.fixture(scope="module")
def dit():
    torch.set_num_threads(2)
    model = WanDiT(dit_config("t2v_1_3b"))
    model.load_state_dict(dit_state("t2v_1_3b"))
    return model


def _never_unpickle(*_a, **_k):
    raise AssertionError("a LoRA file was unpickled")


def _check(path: Path, dit, label: str) -> None:
    """Load and apply ``path``; only our errors may come out and the base must survive unchanged."""
    before = {k: v.clone() for k, v in dit.state_dict().items()}
    with mock.patch.object(torch, "load", _never_unpickle), mock.patch.object(pickle, "load", _never_unpickle), \
            mock.patch.object(pickle, "loads", _never_unpickle):
        try:
            lora = load_lora(path)
        except WanFileError as exc:
            assert path.name in str(exc), exc
            OUTCOMES[f"{label}: refused on load"] += 1
            return
        try:
            with apply_loras(dit, [(lora, 1.0)], warn=False):
                pass
            OUTCOMES[f"{label}: loaded and applied"] += 1
        except WanError as exc:
            assert isinstance(exc, WanError)
            OUTCOMES[f"{label}: refused on apply"] += 1
    after = dit.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed after the LoRA was removed"


# ---- header mutations ----------------------------------------------------------------------------

_DTYPES = ["F64", "F32", "F16", "BF16", "F8_E4M3", "I64", "I8", "U8", "BOOL", "F4", "XX", 7, None]
_SHAPES = [[], [0], [-1], [2**40], [4, 2**33], [2**62, 2**62], "abc", [4.5, 2], [1, 1, 1, 1, 1]]

header_mutation = st.one_of(
    st.tuples(st.just("dtype"), st.integers(0, len(_KEYS) - 1), st.sampled_from(_DTYPES)),
    st.tuples(st.just("shape"), st.integers(0, len(_KEYS) - 1), st.sampled_from(_SHAPES)),
    st.tuples(st.just("offsets"), st.integers(0, len(_KEYS) - 1),
              st.sampled_from(["reverse", "overlap", "beyond", "negative", "huge", "float", "missing", "same"])),
    st.tuples(st.just("rename"), st.integers(0, len(_KEYS) - 1), st.sampled_from(["", "x" * 1000, "\x00", "a.b.lora_A"])),
    st.tuples(st.just("metadata"), st.just(0), st.sampled_from([[], "x", {"a": 1}, None])),
)
raw_mutation = st.one_of(
    st.tuples(st.just("length"), st.sampled_from([0, 1, _N - 1, _N + 1, 2**31, 2**63, 2**64 - 1])),
    st.tuples(st.just("cut"), st.integers(0, len(_RAW))),
    st.tuples(st.just("junk"), st.integers(8, 8 + _N - 1)),
)


def _mutated_header(muts) -> dict:
    header = json.loads(json.dumps(_HEADER))
    for kind, i, value in muts:
        key = _KEYS[i]
        if key not in header:
            continue
        entry = header[key]
        if kind == "dtype":
            entry["dtype"] = value
        elif kind == "shape":
            entry["shape"] = value
        elif kind == "offsets" and isinstance(entry.get("data_offsets"), list):
            b, e = entry["data_offsets"]
            other = header[_KEYS[(i + 1) % len(_KEYS)]].get("data_offsets", [0, 8])
            entry["data_offsets"] = {
                "reverse": [e, b], "overlap": [other[0], other[0] + (e - b)], "beyond": [len(_DATA), len(_DATA) + e - b],
                "negative": [-8, e - b - 8], "huge": [2**63, 2**63 + e - b], "float": [b + 0.5, e],
                "missing": None, "same": [b, b],
            }[value]
            if value == "missing":
                del entry["data_offsets"]
        elif kind == "rename":
            header[value] = header.pop(key)
        elif kind == "metadata":
            header["__metadata__"] = value
    return header


@settings(max_examples=80, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(header_mutation, min_size=1, max_size=3), st.lists(raw_mutation, max_size=1))
def test_mutated_lora_headers_give_only_clear_errors(dit, muts, raw_muts):
    blob = json.dumps(_mutated_header(muts)).encode()
    raw = bytearray(struct.pack("<Q", len(blob)) + blob + _DATA)
    for kind, value in raw_muts:
        if kind == "length":
            struct.pack_into("<Q", raw, 0, value)
        elif kind == "cut":
            del raw[value:]
        elif kind == "junk" and value < len(raw):
            raw[value] = 0xFF
    path = _DIR / "hostile_header.safetensors"
    path.write_bytes(bytes(raw))
    _check(path, dit, "mutated header")


# ---- hostile tensors in a well-formed file -------------------------------------------------------

_MODULES = sorted({k.rsplit(".lora_", 1)[0].rsplit(".alpha", 1)[0] for k in _KEYS})
_TENSOR_HARMS = ["ok", "rank_mismatch", "transposed_up", "alpha_vector", "alpha_nan", "alpha_inf", "alpha_zero",
                 "alpha_negative", "int8", "one_dim", "three_dim", "up_only", "nan_values", "fp8", "huge_rank",
                 "empty"]


def _hostile_tensors(harms: dict[int, str]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    sd = load_file(str(_BASE))
    for i, harm in harms.items():
        m = _MODULES[i % len(_MODULES)]
        a, b, alpha = f"{m}.lora_A.weight", f"{m}.lora_B.weight", f"{m}.alpha"
        if harm == "rank_mismatch":
            sd[b] = sd[b][:, :3].contiguous()
        elif harm == "transposed_up":
            sd[b] = sd[b].t().contiguous()
        elif harm.startswith("alpha_"):
            sd[alpha] = {"alpha_vector": torch.ones(3), "alpha_nan": torch.tensor(float("nan")),
                         "alpha_inf": torch.tensor(float("inf")), "alpha_zero": torch.tensor(0.0),
                         "alpha_negative": torch.tensor(-4.0)}[harm]
        elif harm == "int8":
            sd[a] = sd[a].to(torch.int8)
        elif harm == "one_dim":
            sd[a] = sd[a].reshape(-1).contiguous()
        elif harm == "three_dim":
            sd[a] = sd[a][:, :, None].contiguous()
        elif harm == "empty":
            sd[a] = torch.zeros(0, sd[a].shape[1], dtype=sd[a].dtype)
            sd[b] = torch.zeros(sd[b].shape[0], 0, dtype=sd[b].dtype)
        elif harm == "up_only":
            del sd[a]
        elif harm == "nan_values":
            sd[b] = torch.full_like(sd[b], float("nan"))
        elif harm == "fp8":
            sd[a] = sd[a].to(torch.float8_e4m3fn)
        elif harm == "huge_rank":
            sd[a] = torch.zeros(512, sd[a].shape[1], dtype=sd[a].dtype)
    return sd


@settings(max_examples=40, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.integers(0, 31), st.sampled_from(_TENSOR_HARMS), min_size=1, max_size=4))
def test_hostile_lora_tensors_give_only_clear_errors(dit, harms):
    path = _DIR / "hostile_tensors.safetensors"
    save_file(_hostile_tensors(harms), str(path))
    _check(path, dit, "hostile tensors")


def test_rank_zero_pair_is_refused_clearly(dit):
    path = _DIR / "rank_zero.safetensors"
    save_file(_hostile_tensors({0: "empty"}), str(path))
    _check(path, dit, "rank-0 pair")


def test_outcome_counts(capsys):
    # Printed for the reliability figures (run with -s); both kinds of refusal must have happened.
    with capsys.disabled():
        for label, count in sorted(OUTCOMES.items()):
            print(f"  {label}: {count}")
    if OUTCOMES:
        assert any("refused" in k for k in OUTCOMES)
