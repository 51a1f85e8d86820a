"""Hostile input through the real server: broken and malicious model files selected in our loader
nodes, API graphs with wrong types and out-of-range values for our nodes' inputs, prompts with
control characters and 100k characters, and filename prefixes that try to leave the output folder.

Every case ends as a 400 with a node error, an execution error of our own types with our message,
or a normal result; never a crash, a hang, an unpickle or a file outside ComfyUI's folders.
Hypothesis budget: 30 mutated graphs and 25 prefixes (derandomized; each job waits at most 120 s).
"""

from __future__ import annotations

import json
import math
import pickle
import struct
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.soak import job_graph, prepare
from comfy_client import execution_error
from tiny_models import write_wrong_arch_gguf

OURS = ("WanFileError", "WanInputError")
OUTCOMES: Counter = Counter()
_MARKER = Path(tempfile.mkdtemp(prefix="wan_hostile_marker_"))  # an unpickle or an escape would write here


class _Evil:
    def __reduce__(self):
        return (open, (str(_MARKER / "unpickled"), "w"))


def _write_hostile(folder: Path, kind: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        path = folder / "hostile_truncated.safetensors"
        real = (folder.parent / "diffusion_models" / "wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors").read_bytes()
        path.write_bytes(real[: len(real) // 2])
    elif kind == "huge_header":
        path = folder / "hostile_huge_header.safetensors"
        path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    elif kind == "overlap":
        path = folder / "hostile_overlap.safetensors"
        header = json.dumps({"a.weight": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                             "b.weight": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}).encode()
        path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(24))
    elif kind == "wrong_arch":
        path = write_wrong_arch_gguf(folder / "hostile_flux.gguf")
    elif kind == "gguf_garbage":
        path = folder / "hostile_garbage.gguf"
        path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62) + bytes(64))
    elif kind == "pickle":
        path = folder / "hostile_pickle.ckpt"
        path.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    elif kind == "empty":
        path = folder / "hostile_empty.safetensors"
        path.write_bytes(b"")
    else:
        raise ValueError(kind)
    return path


# (node id in the t2i graph, input name, model folder, hostile kind)
HOSTILE_FILES = [
    ("1", "model", "diffusion_models", "truncated"),
    ("1", "model", "diffusion_models", "huge_header"),
    ("1", "model", "diffusion_models", "overlap"),
    ("1", "model", "diffusion_models", "wrong_arch"),
    ("1", "model", "diffusion_models", "gguf_garbage"),
    ("1", "model", "diffusion_models", "pickle"),
    ("2", "text_encoder", "text_encoders", "empty"),
    ("2", "text_encoder", "text_encoders", "pickle"),
    ("3", "vae", "vae", "overlap"),
    ("3", "vae", "vae", "wrong_arch"),
]


def _clean_message(error: dict, *names: str) -> None:
    """Our error as a user sees it: names each of ``names`` (the file, the input), shows no Python
    traceback and no bytes of a file's content."""
    message = error["exception_message"]
    for name in names:
        assert name in message, (name, error)
    assert "Traceback (most recent call last)" not in message and '  File "' not in message, message
    assert "b'" not in message and 'b"' not in message, message  # no raw file bytes


def _downstream(graph: dict, nodes: set[str]) -> set[str]:
    """``nodes`` and every node that takes an output of one of them, directly or not."""
    found = set(nodes)
    while True:
        more = {nid for nid, node in graph.items() if nid not in found and any(
            isinstance(v, list) and len(v) == 2 and str(v[0]) in found for v in node["inputs"].values())}
        if not more:
            return found
        found |= more


def _served(server):
    """The server still answers and runs a job."""
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 0}},
             "2": {"class_type": "WanVideoCombine", "inputs": {"images": ["1", 0], "frame_rate": 8.0, "loop_count": 0,
                   "filename_prefix": "hostile/alive", "format": "image/gif", "pingpong": False, "save_output": True}}}
    assert server.run(graph, timeout=120)["2"]["images"]


@pytest.fixture(scope="module")
def ready(comfy_server):
    prepare(comfy_server)
    return comfy_server


@pytest.mark.parametrize("node, name, folder, kind", HOSTILE_FILES, ids=[f"{f}-{k}" for _, _, f, k in HOSTILE_FILES])
def test_hostile_model_file_gives_a_clear_error(ready, node, name, folder, kind):
    server = ready
    path = _write_hostile(server.base_dir / "models" / folder, kind)
    graph = job_graph("t2i", 0, prefix_root="hostile")
    graph[node]["inputs"][name] = path.name
    status, body = server.post_prompt(graph)
    if status == 400:  # ComfyUI does not list the file in that folder (e.g. .ckpt for text encoders)
        assert list(body["node_errors"]) == [node], body
        assert path.name in json.dumps(body["node_errors"][node]), body
        OUTCOMES["hostile file: not offered (400)"] += 1
    else:
        error = execution_error(server.wait(body["prompt_id"], 120))
        assert error is not None, f"{kind} file loaded without an error"
        assert error["node_id"] == node, error
        assert error["exception_type"].endswith(OURS), error
        _clean_message(error, path.name)
        OUTCOMES["hostile file: our error"] += 1
    assert not (_MARKER / "unpickled").exists(), "a pickle was loaded"
    _served(server)


# ---- mutated API graphs --------------------------------------------------------------------------

_BAD_VALUES = [None, -1, 0, 2**70, -(2**70), 3.5, "3", "", "x" * 10000, [], {}, [1], ["99", 0], ["1", 7],
               True, math.nan, math.inf, -math.inf, {"__class__": "os.system"}]
# Our nodes' widget inputs in the tiny T2V graph (links are mutated through the same values).
_TARGETS = [(node, name) for node, names in {
    "1": ["model", "base_precision", "quantization", "load_device", "attention_mode"],
    "2": ["text_encoder", "precision", "load_device", "text_encoder"],
    "3": ["vae", "precision"],
    "4": ["positive_prompt", "negative_prompt", "text_encoder"],
    "5": ["width", "height", "num_frames"],
    "6": ["steps", "cfg", "shift", "seed", "sampler", "denoise_strength", "model", "image_embeds"],
    "7": ["enable_vae_tiling", "tile_size", "tile_overlap", "samples"],
    "8": ["frame_rate", "loop_count", "filename_prefix", "format", "pingpong", "save_output", "crf", "images"],
}.items() for name in names]




def _outcome(server, graph, mutated: dict[str, set[str]]) -> str:
    """``mutated``: node id -> the inputs changed. A refusal names a mutated node and its input; an
    execution error is ours, comes from a mutated node or one fed by it, and is clean."""
    status, body = server.post_prompt(graph)
    if status == 400:
        errors = body.get("node_errors") or {}
        assert errors or body.get("error"), body
        assert set(errors) <= set(mutated), (mutated, body)
        for nid, entry in errors.items():
            for reason in entry["errors"]:
                # ComfyUI's own validation crashing on a link to no node names no input
                if not reason["type"].startswith("exception_during"):
                    assert any(name in json.dumps(reason) for name in mutated[nid]), (mutated, body)
        return "400 refused"
    assert status == 200, (status, body)
    error = execution_error(server.wait(body["prompt_id"], 120))
    if error is None:
        return "ran"
    assert error["exception_type"].endswith(OURS), (
        f"{error['node_type']} failed with {error['exception_type']}: {error['exception_message']}")
    assert error["node_id"] in _downstream(graph, set(mutated)), (mutated, error)
    _clean_message(error)
    return "our execution error"


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_TARGETS), st.sampled_from(_BAD_VALUES)), min_size=1, max_size=2))
def test_mutated_graphs_are_refused_or_fail_with_our_errors(ready, mutations):
    graph = job_graph("t2v", 0, prefix_root="hostile")
    graph["6"]["inputs"]["steps"] = 1
    mutated: dict[str, set[str]] = {}
    for (node, name), value in mutations:
        graph[node]["inputs"][name] = value
        mutated.setdefault(node, set()).add(name)
    OUTCOMES[f"mutated graph: {_outcome(ready, graph, mutated)}"] += 1
    assert list(_MARKER.iterdir()) == []


# ---- prompts -------------------------------------------------------------------------------------

def test_control_characters_and_a_100k_prompt_are_encoded_with_a_warning(ready):
    server = ready
    graph = job_graph("t2v", 1, prefix_root="hostile")
    nasty = "".join(chr(c) for c in range(32)) + "\x7f\u202e\ufeff\U0001F600 &amp;lt;b&gt; "
    graph["4"]["inputs"]["positive_prompt"] = nasty + "red house " * 10_000  # 100k characters
    graph["4"]["inputs"]["negative_prompt"] = nasty * 10
    outputs = server.run(graph, timeout=300)
    assert outputs["8"]["images"]
    assert "tokens long; only the first 512 are used" in server.log


# ---- filename prefixes ---------------------------------------------------------------------------

_PREFIX_PIECES = ["..", ".", "a", "/", "\\", "~", "%year%", "..\\..", "C:", "\x00", "x" * 300, str(_MARKER)]


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_PREFIX_PIECES), min_size=1, max_size=4).map("/".join))
def test_hostile_prefixes_write_nothing_outside_comfyui(ready, prefix):
    server = ready
    outside = server.base_dir.parent
    before = {p for p in outside.rglob("*") if server.base_dir not in p.parents}
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 0}},
             "2": {"class_type": "WanVideoCombine", "inputs": {"images": ["1", 0], "frame_rate": 8.0, "loop_count": 0,
                   "filename_prefix": prefix, "format": "image/gif", "pingpong": False, "save_output": True}}}
    status, body = server.post_prompt(graph)
    if status == 400:
        assert list(body["node_errors"]) == ["2"] and "filename_prefix" in json.dumps(body), body
        OUTCOMES["prefix: 400 refused"] += 1
    else:
        entry = server.wait(body["prompt_id"], 120)
        error = execution_error(entry)
        if error is None:
            for item in entry["outputs"]["2"]["images"]:
                written = (server.output_dir / item["subfolder"] / item["filename"]).resolve()
                assert server.output_dir.resolve() in written.parents, written
            OUTCOMES["prefix: written inside output"] += 1
        else:
            assert error["node_id"] == "2" and error["exception_type"].endswith(OURS), error
            _clean_message(error, "filename_prefix")
            OUTCOMES[f"prefix: execution error {error['exception_type'].rsplit('.', 1)[-1]}"] += 1
    after = {p for p in outside.rglob("*") if server.base_dir not in p.parents}
    assert after == before, after - before
    assert list(_MARKER.iterdir()) == []


def test_outcome_counts(ready, capsys):
    with capsys.disabled():
        for label, count in sorted(OUTCOMES.items()):
            print(f"  {label}: {count}")
    _served(ready)
