"""bench/gpu.py runs on CPU at its small size (CI), with every case that needs no GPU or extra kernel.

The figures themselves are not asserted (speed is measured by the bench, never by tests); what is
checked is that each case builds and steps, ours and ComfyUI's native model alike, and that the
cases whose kernel is absent here are reported as error rows rather than crashing the run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from refs import REPO


def _run(tmp_path, cases: str) -> list[dict]:
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--small", "--device", "cpu",
                           "--cases", cases, "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_small_bench_runs_every_plain_case(tmp_path):
    rows = _run(tmp_path, r"native( \([^)]*\))?$|ours$|swap \d+/\d+$")  # eager cases
    labels = [r["case"] for r in rows]
    assert labels == [
        "t2v_1_3b_tiny bf16 ComfyUI native", "t2v_1_3b_tiny bf16 ours",
        "t2v_14b_tiny Q4_K ours", "t2v_14b_tiny Q4_K ours swap 4/4",
        "t2v_14b_tiny fp8 ComfyUI native (scaled fp8)", "t2v_14b_tiny fp8 ours", "t2v_14b_tiny fp8 ours swap 4/4",
    ]
    for row in rows:
        assert "error" not in row, row
        assert row["s_per_step"] > 0


def test_missing_kernel_is_an_error_row(tmp_path):
    if importlib.util.find_spec("sageattention") is not None:
        pytest.skip("sageattention is installed here")
    rows = _run(tmp_path, r"1_3b_tiny bf16 ours\+sage$")
    assert [r["case"] for r in rows] == ["t2v_1_3b_tiny bf16 ours+sage"]
    assert "sageattention" in rows[0]["error"] and "not installed" in rows[0]["error"]
