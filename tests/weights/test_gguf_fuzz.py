"""Mutated GGUF headers: the reader either loads the file or raises WanFileError, quickly.

A fixed budget (200 examples, 3 s each at most). Whatever loads must also dequantize.
"""

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("gguf")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gguf_samples import positions, write_sample  # noqa: E402
from wan.errors import WanFileError  # noqa: E402
from wan.weights.gguf import read_gguf  # noqa: E402

_DIR = Path(tempfile.mkdtemp(prefix="gguf_fuzz_"))
_BASE = write_sample(_DIR / "base.gguf")
_BYTES = _BASE.read_bytes()
_HEADER_END = positions(_BASE)["data_offset"]
_EXTREMES = [0, 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1, len(_BYTES), _HEADER_END]

mutation = st.one_of(
    st.tuples(st.just("byte"), st.integers(0, _HEADER_END - 1), st.integers(0, 255)),
    st.tuples(st.just("u64"), st.integers(0, _HEADER_END - 8), st.sampled_from(_EXTREMES)),
    st.tuples(st.just("u32"), st.integers(0, _HEADER_END - 4), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("cut"), st.integers(0, len(_BYTES)), st.just(0)),
)


def mutate(data: bytes, muts) -> bytes:
    raw = bytearray(data)
    for kind, at, val in muts:
        if kind == "byte" and at < len(raw):
            raw[at] = val
        elif kind == "u64" and at + 8 <= len(raw):
            struct.pack_into("<Q", raw, at, val)
        elif kind == "u32" and at + 4 <= len(raw):
            struct.pack_into("<I", raw, at, val)
        elif kind == "cut":
            del raw[at:]
    return bytes(raw)


@settings(max_examples=200, deadline=3000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_mutated_headers_give_only_clear_errors(muts):
    path = _DIR / "mutated.gguf"
    path.write_bytes(mutate(_BYTES, muts))
    try:
        state, _ = read_gguf(path)
    except WanFileError as exc:
        assert "mutated.gguf" in str(exc)
        return
    for value in state.values():
        if getattr(value, "is_packed", False):
            value.dequantize()


def test_fuzz_did_not_allocate_beyond_reason():
    # The same 200 examples in a process of their own, whose peak RSS (VmHWM of its own memory map;
    # not ru_maxrss, which a child inherits from the forked test process) is theirs alone: a hostile
    # count honoured would add gigabytes.
    here = Path(__file__).resolve()
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2], sys.argv[3]]; import test_gguf_fuzz as t; "
            "t.test_mutated_headers_give_only_clear_errors(); "
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])")
    out = subprocess.run([sys.executable, "-c", code, str(here.parent), str(here.parents[1] / "support"),
                          str(here.parents[2])], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    peak_kib = int(out.stdout.strip().splitlines()[-1])
    assert peak_kib < 2 * 1024 * 1024, peak_kib
