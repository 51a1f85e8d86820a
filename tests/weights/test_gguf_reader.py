"""GGUF reading against gguf-py, and every bad-file case ending in a clear WanFileError.

Files are written with gguf-py's GGUFWriter; the byte positions we corrupt are located with
gguf-py's GGUFReader (the reference), not with our parser.
"""

import struct
import time

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from gguf_samples import positions, write_sample  # noqa: E402
from wan.errors import WanFileError  # noqa: E402
from wan.weights.gguf import read_gguf, read_gguf_header  # noqa: E402

Q = gguf.GGMLQuantizationType


@pytest.fixture
def sample(tmp_path):
    return write_sample(tmp_path / "model.gguf")


def test_matches_gguf_py(sample):
    state, meta = read_gguf(sample)
    assert meta["general.architecture"] == "wan"
    ref = gguf.GGUFReader(str(sample))
    assert set(state) == {t.name for t in ref.tensors}
    for t in ref.tensors:
        expected = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float()
        shape = tuple(int(v) for v in reversed(t.shape))
        ours = state[t.name]
        if t.tensor_type in (Q.F32, Q.F16):
            assert not getattr(ours, "is_packed", False)
            got = ours.float()
        else:
            assert ours.is_packed and ours.qtype == t.tensor_type.name
            got = ours.dequantize(torch.float32)
        assert tuple(ours.shape) == shape
        assert torch.equal(got, expected.reshape(shape))
    header, _ = read_gguf_header(sample)
    assert header["blocks.0.ffn.0.weight"] == ("Q4_K", (2, 256))
    assert header["patch_embedding.weight"] == ("F32", (8, 4, 1, 2, 2))


def test_orig_shape_metadata(tmp_path):
    path = tmp_path / "reshaped.gguf"
    rng = np.random.default_rng(1)
    w = gguf.GGUFWriter(str(path), "wan")
    a = rng.standard_normal((8, 32)).astype(np.float32)
    w.add_tensor("blocks.0.x.weight", gguf.quants.quantize(a, Q.Q8_0), raw_dtype=Q.Q8_0)
    w.add_array("comfy.gguf.orig_shape.blocks.0.x.weight", [4, 2, 32])
    w.add_tensor("patch_embedding.weight", rng.standard_normal((2, 2, 1, 1, 1)).astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    state, _ = read_gguf(path)
    t = state["blocks.0.x.weight"]
    assert tuple(t.shape) == (4, 2, 32)
    ref = gguf.quants.dequantize(gguf.quants.quantize(a, Q.Q8_0), Q.Q8_0)
    assert torch.equal(t.dequantize(), torch.from_numpy(ref).reshape(4, 2, 32))


def patched(path, at, fmt, value):
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, at, value)
    path.write_bytes(bytes(raw))
    return path


def expect_error(path, *words):
    t0 = time.perf_counter()
    with pytest.raises(WanFileError) as info:
        read_gguf(path)
    assert time.perf_counter() - t0 < 2.0, "a bad file must be refused quickly"
    msg = str(info.value)
    assert path.name in msg
    for w in words:
        assert w.lower() in msg.lower(), msg
    return msg


def test_truncated_at_several_points(sample, tmp_path):
    full = sample.read_bytes()
    pos = positions(sample)
    cuts = [0, 3, 10, 20, pos["first_kv"] + 5, pos["infos"][1]["dims_at"] + 3,
            pos["data_offset"] + 10, len(full) - 1]
    for cut in cuts:
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(full[:cut])
        expect_error(p)


def test_bad_magic(sample):
    raw = bytearray(sample.read_bytes())
    raw[:4] = b"GGUX"
    sample.write_bytes(bytes(raw))
    expect_error(sample, "not a gguf")


@pytest.mark.parametrize("version", [1, 4, 99])
def test_bad_version(sample, version):
    expect_error(patched(sample, 4, "<I", version), "version")


def test_huge_tensor_count(sample):
    expect_error(patched(sample, 8, "<Q", 2**63), "tensor count")


def test_huge_kv_count(sample):
    expect_error(patched(sample, 16, "<Q", 2**40), "metadata key count")


def test_huge_string_length(sample):
    pos = positions(sample)
    expect_error(patched(sample, pos["first_kv"], "<Q", 2**62), "truncated")


def test_out_of_range_offset(sample):
    info = positions(sample)["infos"][0]
    expect_error(patched(sample, info["offset_at"], "<Q", 2**40), "past the end")


def test_overlapping_offsets(sample):
    a, b = positions(sample)["infos"][:2]
    expect_error(patched(sample, b["offset_at"], "<Q", a["offset"]), "overlap")


def test_shape_type_mismatch(sample):
    info = positions(sample)["infos"][0]  # a Q8_0 tensor: rows must be whole 32-element blocks
    expect_error(patched(sample, info["dims_at"], "<Q", 33), "block size")


def test_unknown_type(sample):
    info = positions(sample)["infos"][0]
    expect_error(patched(sample, info["type_at"], "<I", 999), "type")


def test_type_changed_so_bytes_do_not_fit(sample):
    info = positions(sample)["infos"][-1]  # the last tensor, F16: as F32 it needs twice the bytes
    expect_error(patched(sample, info["type_at"], "<I", int(Q.F32)))


def test_non_wan_architecture(tmp_path):
    msg = expect_error(write_sample(tmp_path / "llm.gguf", arch="llama"), "llama")
    assert "wan" in msg


def test_missing_patch_embedding_is_refused(tmp_path):
    expect_error(write_sample(tmp_path / "old.gguf", with_patch=False), "patch_embedding", "split")


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(WanFileError, match="not found"):
        read_gguf(tmp_path / "nope.gguf")
    with pytest.raises(WanFileError, match="directory"):
        read_gguf(tmp_path)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(WanFileError, match="too short"):
        read_gguf(tmp_path / "empty.gguf")
