"""The speed tables of README.md, regenerated from the measured results in bench/results/*.json.

    python bench/tables.py            # rewrite every table between its README markers
    python bench/tables.py --check    # exit 1 (and say which) if a table differs from its JSON

Each table sits between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in README.md and is
made from bench/results/NAME.json alone, with the GPU, versions, date and code version of the run
beneath it; a row's ratio is ours over ComfyUI native at equal settings (below 1: ours is faster).
``bench/gpu.py --results bench/results/models.json`` writes the whole-model JSON, ``bench/e2e.py
--models <ComfyUI models folder> --results bench/results/e2e.json`` the end-to-end one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"

# whole models: (row title, label prefix, ComfyUI's label or None, our base label)
MODEL_ROWS = (
    ("1.3B bf16", "t2v_1_3b bf16 ", "ComfyUI native", "ours"),
    ("14B Q4_K (GGUF)", "t2v_14b Q4_K ", None, "ours"),
    ("14B scaled fp8", "t2v_14b fp8 ", "ComfyUI native (scaled fp8)", "ours"),
    ("14B scaled fp8, fp8 matmul (`fp8_e4m3fn_fast`)", "t2v_14b fp8 ", "ComfyUI native (scaled fp8, fp8 matmul)",
     "ours fp8_fast"),
)


def num(v: float) -> str:
    """Three significant digits, trailing zeros kept (0.564, 3.10, 17.1)."""
    return f"{v:#.3g}".rstrip(".")


def cell(row: dict | None, bold_peak: bool = False, key: str = "s_per_step") -> str:
    if row is None:
        return ""
    if "error" in row:
        return "error"
    text = f"{num(row[key])} s"
    if row.get("min") is not None and row.get("max") is not None:
        text += f" ({num(row['min'])}-{num(row['max'])})"
    if row.get("peak_gib") is not None:
        peak = f"{num(row['peak_gib'])} GiB"
        text += f", **{peak}**" if bold_peak else f", {peak}"
    return text


def ratio(ours: dict | None, ref: dict | None, key: str = "s_per_step") -> str:
    if not ours or not ref or key not in ours or key not in ref:
        return "not measured"
    return f"{ours[key] / ref[key]:.2f}x"


def provenance(data: dict) -> str:
    steps = data.get("timed_steps", 1)
    how = "one timed step per figure" if steps == 1 else f"median of {steps} timed steps (min-max in brackets)"
    line = (f"Measured on {data['gpu']}, {data['date']}, code {data['code_version']}; "
            f"torch {data.get('torch') or 'not recorded'}, CUDA {data.get('cuda') or 'not recorded'}; {how}.")
    if data.get("source"):
        line += f" Source: {data['source']}."
    return "\n".join([line] + [f"- {n}" for n in data.get("notes", ())])


def models_table(data: dict) -> str:
    rows = {r["case"]: r for r in data["rows"]}
    used: set[str] = set()

    def get(label):
        if label in rows:
            used.add(label)
        return rows.get(label)

    swap = next((m.group(1) for c in rows if (m := re.search(r" swap (\d+/\d+)", c))), "N/M")
    out = [f"| model, weights | ComfyUI native | ComfyUI native + compile | ours | ours, swap {swap} | ours + compile "
           f"| ours, swap {swap} + compile | ours / native | ours / native, both compiled |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for title, prefix, native, base in MODEL_ROWS:
        ref = get(prefix + native) if native else None
        ref_c = get(prefix + native + "+compile") if native else None
        ours, ours_c = get(prefix + base), get(prefix + base + "+compile")
        sw, sw_c = get(f"{prefix}{base} swap {swap}"), get(f"{prefix}{base} swap {swap}+compile")
        no_native = "(no GGUF in ComfyUI core)" if native is None else None
        out.append("| " + " | ".join([
            title, no_native or cell(ref), "" if no_native else cell(ref_c), cell(ours), cell(sw, True),
            cell(ours_c), cell(sw_c, True), "" if no_native else ratio(ours, ref),
            "" if no_native else ratio(ours_c, ref_c)]) + " |")
    rest = [r for c, r in rows.items() if c not in used]
    if rest:
        out += ["", "Other cases (same run):", ""]
        out += [f"- {r['case']}: {cell(r)}" for r in rest]
    return "\n".join(out + ["", provenance(data)])


def components_table(data: dict) -> str:
    out = ["| what | ours | ComfyUI native | diffusers | ours / native |", "| --- | --- | --- | --- | --- |"]
    for r in data["rows"]:
        a, b = r["ratio"]
        out.append(f"| {r['case']} | {r['ours']} | {r['ComfyUI native']} | {r['diffusers']} | {a / b:.2f}x |")
    return "\n".join(out + ["", provenance(data)])


def gguf_table(data: dict) -> str:
    out = ["| weights | step time / bf16 | weight memory / bf16 |", "| --- | --- | --- |"]
    out += [f"| {r['case']} | {r['time_vs_bf16']:.2f}x | {r['memory_vs_bf16']:.2f}x |" for r in data["rows"]]
    return "\n".join(out + ["", provenance(data)])


def e2e_table(data: dict) -> str:
    """bench/e2e.py: one graph end to end, seconds per run (median, min-max), ours / ComfyUI."""
    rows = {r["case"]: r for r in data["rows"]}
    ref, ours = rows.get("ComfyUI native"), rows.get("ours")
    out = ["| graph | ComfyUI native | ours | ours / native |", "| --- | --- | --- | --- |",
           f"| {data['graph']}, {data['size']} | {cell(ref, key='s_per_run') or 'not measured'} | "
           f"{cell(ours, key='s_per_run') or 'not measured'} | {ratio(ours, ref, 's_per_run')} |"]
    if not data["rows"]:  # written without a GPU: nothing measured to attribute
        return "\n".join(out + ["", f"Not measured yet: no GPU was available since bench/e2e.py was written "
                                    f"({data['date']}, code {data['code_version']})."])
    return "\n".join(out + ["", provenance(data)])


TABLES = {"models": models_table, "components": components_table, "gguf": gguf_table, "e2e": e2e_table}


def render(name: str, results: Path = RESULTS) -> str:
    return TABLES[name](json.loads((results / f"{name}.json").read_text()))


def rewrite(text: str, results: Path = RESULTS) -> str:
    """``text`` (README.md) with every marked table made again from its JSON."""
    for name in TABLES:
        pattern = re.compile(rf"(<!-- table:{name} -->)\n(?:.*?\n)?(<!-- /table:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- table:{name} --> ... <!-- /table:{name} --> markers")
        table = render(name, results)
        text = pattern.sub(lambda m: f"{m.group(1)}\n{table}\n{m.group(2)}", text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only check that README.md matches the JSON")
    args = p.parse_args(argv)
    old = README.read_text()
    new = rewrite(old)
    if args.check:
        if new != old:
            print("README.md speed tables differ from bench/results/*.json: run python bench/tables.py")
            return 1
        return 0
    if new != old:
        README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
