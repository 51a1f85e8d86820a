"""bench/e2e.py's small case: the Lightning Wan2.2 I2V A14B recipe on tiny files of the real formats,
ComfyUI's native graph (its own nodes, in the bench's process) beside ours, each timed end to end
(text encode + 4 steps + decode); the results file it writes makes the README's end-to-end table.
Figures are not asserted (speed is the bench's business): each side runs without error, the record
carries what makes it repeatable, and the table's ratio is the file's own."""

from __future__ import annotations

import json
import subprocess
import sys

from refs import REPO

sys.path.insert(0, str(REPO / "bench"))
import tables  # noqa: E402


def test_small_end_to_end_bench_writes_results(tmp_path):
    out = tmp_path / "e2e.json"
    cmd = [sys.executable, str(REPO / "bench" / "e2e.py"), "--small", "--device", "cpu", "--reps", "2",
           "--results", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["table"] == "e2e" and data["size"] == "64x64x5" and data["torch"] and data["code_version"]
    rows = {r["case"]: r for r in data["rows"]}
    assert set(rows) == {"ComfyUI native", "ours"}
    for r in rows.values():
        assert "error" not in r, r
        assert r["timed_steps"] == 2 and 0 < r["min"] <= r["s_per_run"] <= r["max"]
    ratio = rows["ours"]["s_per_run"] / rows["ComfyUI native"]["s_per_run"]
    assert f"ratio ours / ComfyUI native: {ratio:.3f}" in proc.stdout
    table = tables.e2e_table(data)
    assert f"| {ratio:.2f}x |" in table and f"on {data['gpu']}" in table
