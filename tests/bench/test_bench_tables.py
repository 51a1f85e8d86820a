"""The README's speed tables are exactly what bench/tables.py makes from bench/results/*.json (this
fails when either drifts), and bench/gpu.py's small case writes a results file those tables are
made from: median, min and max of at least 5 timed steps, the run's versions and date, ratios."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from refs import REPO

sys.path.insert(0, str(REPO / "bench"))
import tables  # noqa: E402


def test_readme_tables_are_made_from_the_json():
    readme = (REPO / "README.md").read_text()
    assert tables.rewrite(readme) == readme, "run python bench/tables.py"
    for name in tables.TABLES:
        data = json.loads((REPO / "bench" / "results" / f"{name}.json").read_text())
        # each table names where its figures come from
        for key in ("gpu", "date", "code_version", "source"):
            assert data[key], (name, key)
        assert f"<!-- table:{name} -->\n{tables.render(name)}\n<!-- /table:{name} -->" in readme


def test_a_changed_figure_changes_the_table(tmp_path):
    for name in tables.TABLES:
        (tmp_path / f"{name}.json").write_text((REPO / "bench" / "results" / f"{name}.json").read_text())
    data = json.loads((tmp_path / "models.json").read_text())
    data["rows"][0]["s_per_step"] = 0.5
    (tmp_path / "models.json").write_text(json.dumps(data))
    readme = (REPO / "README.md").read_text()
    changed = tables.rewrite(readme, tmp_path)
    assert changed != readme
    assert "| 1.3B bf16 | 0.500 s, 4.11 GiB |" in changed
    assert "| 1.14x |" in changed  # 0.572 / 0.5


def test_small_bench_writes_results(tmp_path):
    out = tmp_path / "models.json"
    cmd = [sys.executable, str(REPO / "bench" / "gpu.py"), "--small", "--device", "cpu", "--only", "1.3b",
           "--cases", r"bf16 (ComfyUI native|ours)$", "--results", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["torch"] and data["date"] and data["code_version"] and data["timed_steps"] == 5
    rows = {r["case"]: r for r in data["rows"]}
    assert set(rows) == {"t2v_1_3b_tiny bf16 ComfyUI native", "t2v_1_3b_tiny bf16 ours"}
    for r in rows.values():
        assert r["timed_steps"] == 5 and 0 < r["min"] <= r["s_per_step"] <= r["max"]
    ratio = rows["t2v_1_3b_tiny bf16 ours"]["s_per_step"] / rows["t2v_1_3b_tiny bf16 ComfyUI native"]["s_per_step"]
    assert "ratio t2v_1_3b_tiny bf16 ours / ComfyUI native: " in proc.stdout
    # the table is made from this run's file; its case names are the tiny ones, listed as other cases
    table = tables.models_table(data)
    assert "t2v_1_3b_tiny bf16 ours:" in table and f"on {data['gpu']}" in table and ratio > 0


@pytest.mark.parametrize("reps", ["1", "4"])
def test_fewer_than_five_steps_refused(reps):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--small", "--reps", reps],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "at least 5" in proc.stderr
