"""The main job's model files: the catalogue's default set for its workflow, downloaded where
missing, or (``--tiny``) tiny random stand-ins under the same names; and the job's graph, the
bundled workflow filled with the prompt and those files.

The pack's library (``wan.install``) is imported inside the functions: main_job.py imports this
module before ./.venv, and with it torch, exists; the functions run after it has re-run itself there.
"""

from __future__ import annotations

import json
import os
import sys

from main_job_install import REPO, Failure, Install

WORKFLOW = "t2v"
# --tiny shrinks the job so that it finishes in seconds on a CPU; the graph is otherwise unchanged.
TINY_INPUTS = {"width": 64, "height": 64, "num_frames": 9, "steps": 3}

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # ``import wan`` from the checkout this script belongs to


def fetch_models(install: Install):
    """Download what is missing of the default set into the base folder's models/; the catalogue."""
    from wan.install.catalog import load_catalog
    from wan.install.download import download_files, file_url
    from wan.install.tiny import is_tiny

    catalog = load_catalog()
    files = catalog.resolve([WORKFLOW])
    missing = [f for f in files if not any(os.path.isfile(p) for p in f.candidate_paths(install.base))]
    for f in files:
        if f not in missing:
            path = next(p for p in f.candidate_paths(install.base) if os.path.isfile(p))
            note = " (a tiny random file from wan.install.tiny: the video will be noise)" if is_tiny(path) else ""
            print(f"  have {path}{note}", flush=True)
    if missing:
        sizes = [f.size for f in missing]
        size = f" ({sum(sizes) / 1e9:.1f} GB)" if None not in sizes else ""
        print(f"Downloading {len(missing)} model file(s){size} into {install.base / 'models'} ...", flush=True)
        _, failed = download_files(missing, install.base)
        if failed:
            raise Failure(_download_failure(failed, install, file_url))
    return catalog


def _download_failure(failed, install: Install, file_url) -> str:
    unreachable = [e for _, e in failed if e.unreachable]
    lines = []
    if unreachable:
        lines.append(f"No network: {unreachable[0]}.")
        lines.append("Fetch these files by hand and put each one where shown, then run this again:")
    else:
        lines.append("Some model files could not be downloaded:")
    for f, error in failed:
        lines.append(f"  {f.filename}")
        lines.append(f"    from {file_url(f)}")
        lines.append(f"    to   {f.local_path(install.base)}")
        if not error.unreachable:
            lines.append(f"    ({error})")
    if unreachable:
        lines.append("Or check the install without them: python3 scripts/main_job.py --tiny")
    return "\n".join(lines)


def write_tiny_models(install: Install):
    """The default set as tiny random files under the catalogue's names; the catalogue."""
    from wan.install.catalog import load_catalog
    from wan.install.tiny import write_default_set

    catalog = load_catalog()
    write_default_set(install.base, WORKFLOW, catalog)
    return catalog


def build_graph(prompt: str, catalog, tiny: bool) -> dict:
    """workflows/t2v.api.json with the prompt, the default model file names and, for --tiny, a small job."""
    path = REPO / "workflows" / f"{WORKFLOW}.api.json"
    if not path.is_file():
        raise Failure(f"{path} does not exist yet: this checkout has no bundled {WORKFLOW} workflow")
    graph = json.loads(path.read_text())
    defaults = catalog.workflows[WORKFLOW].slots
    for node in graph.values():
        inputs = node.get("inputs", {})
        for key, value in list(inputs.items()):
            if key == "positive_prompt" or (key == "text" and "Encode" in node.get("class_type", "")):
                inputs[key] = prompt
            elif isinstance(value, str) and value.endswith((".safetensors", ".gguf")):
                # A catalogued file that fills a slot of this workflow: use the default file of that slot.
                slot = next((f.workflows.get(WORKFLOW) for f in catalog.files if f.filename == value), None)
                if slot in defaults:
                    inputs[key] = catalog.file(defaults[slot]).filename
            elif tiny and key in TINY_INPUTS and isinstance(value, int):
                inputs[key] = TINY_INPUTS[key]
    return graph
