"""The README's main job (scripts/main_job.py): end to end on tiny models, without network, and the
graph and folders it chooses.

The end-to-end test starts its own ComfyUI (the main job's, not the session server), as a user's
command does; the video it prints is decoded by ffmpeg and its frame count compared with the
number of frames the job asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from wan.install.catalog import load_catalog

# scripts/ is on sys.path (tests/conftest.py): the main job's modules import as the script imports them.
import main_job_install
import main_job_models

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "main_job.py"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env.update(extra)
    return env


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def _default_files():
    catalog = load_catalog()
    return [catalog.file(n) for n in catalog.workflows["t2v"].slots.values()]


def test_graph_gets_prompt_default_models_and_tiny_size():
    catalog = load_catalog()
    original = json.loads((REPO / "workflows" / "t2v.api.json").read_text())
    graph = main_job_models.build_graph("a red house on a green hill", catalog, tiny=True)
    assert graph.keys() == original.keys()
    by_class = {node["class_type"]: node["inputs"] for node in graph.values()}
    assert "a red house on a green hill" in [v for inputs in by_class.values() for v in inputs.values()]
    wanted = {f.filename for f in _default_files()}
    used = {v for inputs in by_class.values() for v in inputs.values()
            if isinstance(v, str) and v.endswith((".safetensors", ".gguf"))}
    assert used == wanted
    sizes = {k: v for inputs in by_class.values() for k, v in inputs.items() if k in main_job_models.TINY_INPUTS}
    assert sizes == main_job_models.TINY_INPUTS
    # Without --tiny the job keeps the workflow's own size and steps.
    full = main_job_models.build_graph("x", catalog, tiny=False)
    for key, node in full.items():
        for name, value in node["inputs"].items():
            if name in main_job_models.TINY_INPUTS:
                assert value == original[key]["inputs"][name]


def test_no_network_names_the_files_and_where_they_go(tmp_path):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "a cat", "--workdir", str(tmp_path)],
        env=_env(HF_ENDPOINT=endpoint), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "No network" in proc.stderr and endpoint in proc.stderr
    for f in _default_files():
        assert f.filename in proc.stderr
        assert str(tmp_path / "models" / f.folder / f.filename) in proc.stderr
        assert f"/{f.repo}/resolve/{f.revision}/{f.path}" in proc.stderr
    assert not (tmp_path / "main_job_comfyui.log").exists(), "ComfyUI should not start without the models"
    assert not list((tmp_path / "models").rglob("*.safetensors"))


def test_existing_comfyui_uses_its_own_folders(tmp_path):
    comfyui = tmp_path / "ComfyUI"
    comfyui.mkdir()
    args = argparse.Namespace(tiny=False, comfyui=str(comfyui), workdir=None)
    with pytest.raises(main_job_install.Failure, match="no main.py"):
        main_job_install.Install(args)
    (comfyui / "main.py").write_text("")
    install = main_job_install.Install(args)
    assert install.own_folders and install.base == comfyui.resolve()
    assert install.server_root() == comfyui.resolve()  # run from its own folder, no shadow copy
    install.link_pack()
    link = comfyui / "custom_nodes" / main_job_install.PACK
    assert link.is_symlink() and link.resolve() == REPO
    install.link_pack()  # idempotent
    # --tiny never writes its random files into a real models folder.
    tiny = main_job_install.Install(argparse.Namespace(tiny=True, comfyui=str(comfyui), workdir=str(tmp_path / "t")))
    assert not tiny.own_folders and tiny.base == (tmp_path / "t").resolve()


def test_tiny_end_to_end(tmp_path):
    import imageio_ffmpeg

    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "a bonfire on a beach at night", "--tiny", "--workdir", str(tmp_path)],
        env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "noise" in proc.stdout
    videos = re.findall(r"^video: (.+)$", proc.stdout, re.M)
    assert len(videos) == 1, proc.stdout
    video = Path(videos[0])
    assert video.is_file() and video.suffix == ".mp4" and tmp_path in video.parents
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == main_job_models.TINY_INPUTS["num_frames"]
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    assert tuple(meta["size"]) == (main_job_models.TINY_INPUTS["width"], main_job_models.TINY_INPUTS["height"])
    reader.close()
