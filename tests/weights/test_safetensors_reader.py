"""Validated safetensors reading: same tensors as the safetensors package; bad headers refused."""

import json
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from wan.errors import WanFileError
from wan.weights.safetensors import read_safetensors, read_safetensors_header


def sample_dict():
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(6, 4, generator=g),
        "b.bias": torch.randn(5, generator=g).to(torch.bfloat16),
        "c.fp8": torch.randn(3, 8, generator=g).to(torch.float8_e4m3fn),
        "d.half": torch.randn(2, 3, 1, 1, 1, generator=g).half(),
        "e.idx": torch.arange(7, dtype=torch.int64),
    }


def test_matches_safetensors_package(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(sample_dict(), str(path), metadata={"format": "pt"})
    ref = load_file(str(path))
    ours = read_safetensors(path)
    assert set(ours) == set(ref)
    for k in ref:
        assert ours[k].dtype == ref[k].dtype and ours[k].shape == ref[k].shape
        assert torch.equal(ours[k].view(torch.uint8), ref[k].view(torch.uint8))
    header, meta = read_safetensors_header(path)
    assert header["c.fp8"] == ("F8_E4M3", (3, 8)) and meta == {"format": "pt"}
    ours["a.weight"].add_(1)  # copy-on-write: the file must not change
    assert torch.equal(load_file(str(path))["a.weight"], ref["a.weight"])


def write_raw(path, header, data=b"", length=None):
    blob = json.dumps(header).encode() if not isinstance(header, bytes) else header
    n = len(blob) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


@pytest.mark.parametrize("case,words", [
    ("huge_len", "header length"),
    ("negative_len", "header length"),
    ("non_json", "json"),
    ("not_object", "object"),
    ("bad_dtype", "dtype"),
    ("offset_past_end", "outside"),
    ("overlap", "overlap"),
    ("size_mismatch", "needs"),
    ("bad_shape", "shape"),
    ("short", "too short"),
])
def test_bad_headers(tmp_path, case, words):
    p = tmp_path / f"{case}.safetensors"
    ok = {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    if case == "huge_len":
        write_raw(p, ok, b"\0" * 8, length=2**60)
    elif case == "negative_len":
        p.write_bytes(struct.pack("<q", -5) + b"{}")
    elif case == "non_json":
        write_raw(p, b"{not json at all", b"")
    elif case == "not_object":
        write_raw(p, [1, 2, 3])
    elif case == "bad_dtype":
        write_raw(p, {"x": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)
    elif case == "offset_past_end":
        write_raw(p, {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4)
    elif case == "overlap":
        write_raw(p, {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
    elif case == "size_mismatch":
        write_raw(p, {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    elif case == "bad_shape":
        write_raw(p, {"x": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8)
    elif case == "short":
        p.write_bytes(b"\1\0")
    with pytest.raises(WanFileError) as info:
        read_safetensors(p)
    assert p.name in str(info.value) and words in str(info.value).lower()


_DIR = Path(tempfile.mkdtemp(prefix="st_fuzz_"))
_BASE = _DIR / "base.safetensors"
save_file(sample_dict(), str(_BASE))
_RAW = _BASE.read_bytes()
_HLEN = struct.unpack("<Q", _RAW[:8])[0]


@settings(max_examples=200, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 8 + _HLEN - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(_RAW)))
def test_mutated_headers_give_only_clear_errors(flips, cut):
    raw = bytearray(_RAW)
    for at, val in flips:
        raw[at] = val
    path = _DIR / "mutated.safetensors"
    path.write_bytes(bytes(raw[:cut]) if cut < 8 + _HLEN else bytes(raw))
    try:
        out = read_safetensors(path)
    except WanFileError as exc:
        assert "mutated.safetensors" in str(exc)
        return
    for t in out.values():
        t.float().sum()  # whatever loads must be usable


def test_loader_tells_safetensors_from_pickles_by_content(tmp_path):
    """A safetensors header length whose first byte is 0x80 (a pickle's protocol marker) still reads."""
    import pickle

    from wan.weights.loader import load_state_dict

    for pad in range(0, 300):
        path = tmp_path / "odd.safetensors"
        save_file({"w": torch.ones(2)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length starting with 0x80")
    assert torch.equal(load_state_dict(path)["w"], load_file(str(path))["w"])

    evil = tmp_path / "evil.safetensors"  # a pickle under a safetensors name
    evil.write_bytes(pickle.dumps({"x": 1}, protocol=4))
    with pytest.raises(WanFileError, match="pickle"):
        load_state_dict(evil)
