"""Soak: a stream of mixed Wan jobs (T2V, I2V, T2I; sizes, lengths, cfg and seeds varied; some
queued at once) through the real server. Every job must finish with its own output, the server's
resident memory floor must not rise after the warm-up, the DiT files must be read once and then
reused, and ComfyUI's "free memory" must make the next job read them again.

80 jobs (WAN_SOAK_JOBS overrides), 20 of warm-up, a 1 % limit on the floor's rise: enough readings
that a leak of 1 MiB per job fails while the allocator's noise passes (see bench/soak.py and
tests/bench/test_soak_growth.py).

The switching soak: 50 T2V jobs that swap between two model sets every 5 jobs, the last job of each
block ending in Wan Unload Models (one set decodes straight to a file with Wan Decode To Video): each
block reads its DiT from disk again, every job writes its file, the RSS floor does not rise after 10
jobs of warm-up (1 % limit: a leak of 1 MiB per job fails, tests/bench/test_soak_growth.py), and
the readings after each unload stay within 5 % of each other. Its own server, allocating large
buffers with mmap (bench/soak.py SWITCH_ENV), so that a leak cannot hide in what the unloads free.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio_ffmpeg
import pytest

from bench.soak import JOBS as SOAK_JOBS
from bench.soak import (LOADED, MAX_GROWTH, SWITCH_ENV, SWITCH_EVERY, SWITCH_JOBS, SWITCH_WARMUP, WARMUP, job_graph,
                        rss_bytes, run_soak, run_switching)
from comfy_server import ComfyServer

JOBS = int(os.environ.get("WAN_SOAK_JOBS", str(SOAK_JOBS)))
SWITCHES = int(os.environ.get("WAN_SOAK_SWITCH_JOBS", str(SWITCH_JOBS)))
DIT_FILES = 2  # the T2V GGUF (t2v and t2i jobs) and the I2V fp8 safetensors


def _cheap(server):
    """A core-only prompt through the queue: once it is done, flags set before it were handled."""
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    server.run(graph)


def test_soak_mixed_jobs_finish_reuse_models_and_hold_memory(comfy_server):
    result = run_soak(comfy_server, JOBS, prefix_root="soak_test")
    report = result.report()
    print(report)

    # Every job finished, with exactly one file of its own (its index and kind in the name).
    assert [j.error for j in result.jobs if j.error] == [], report
    files = set()
    for job in result.jobs:
        assert len(job.files) == 1, (job, report)
        [path] = job.files
        assert path.name.startswith(f"{job.index:03d}_{job.kind}_"), path
        assert path.is_file() and path.stat().st_size > 0, path
        if job.kind != "t2i":
            frames = job_graph(job.kind, job.index)["5"]["inputs"]["num_frames"]
            assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == frames, path
        files.add(path)
    assert len(files) == JOBS
    assert list(comfy_server.output_dir.rglob(".*.part")) == []

    # Memory: no upward trend once warm.
    slope, growth = result.growth()
    assert len(result.jobs) >= WARMUP + 60 or "WAN_SOAK_JOBS" in os.environ, "too few readings to see 1 MiB/job"
    assert growth <= MAX_GROWTH, report

    # Models: each DiT file read from disk at most once although the jobs switch between them.
    assert result.dit_loads <= DIT_FILES, report
    switches = sum(a.kind != b.kind for a, b in zip(result.jobs, result.jobs[1:]))
    assert switches >= JOBS // 3

    # ComfyUI's "free memory" (the UI button, POST /free) reaches our cache: the next job reads the file again.
    rss_before = rss_bytes(comfy_server.pid)
    assert comfy_server.free(unload_models=True, free_memory=True) == 200
    _cheap(comfy_server)
    _cheap(comfy_server)
    rss_after = rss_bytes(comfy_server.pid)
    loads = comfy_server.log.count(LOADED)
    outputs = comfy_server.run(job_graph("t2v", JOBS, "soak_test"), timeout=300)
    assert comfy_server.log.count(LOADED) == loads + 1, comfy_server.log_tail(20)
    assert outputs["8"]["images"][0]["filename"].startswith(f"{JOBS:03d}_t2v_")
    print(f"RSS before /free {rss_before / 2**20:.1f} MiB, after {rss_after / 2**20:.1f} MiB")


@pytest.fixture
def switch_server(comfy_server, tmp_path):
    """A server of the session's release of its own, allocating as bench/soak.py SWITCH_ENV says."""
    saved = {k: os.environ.get(k) for k in SWITCH_ENV}
    os.environ.update(SWITCH_ENV)
    server = ComfyServer(tmp_path, {"comfyui-wan-nodes": Path(__file__).resolve().parents[2]},
                         comfyui=comfy_server.version)
    try:
        server.start(timeout=180)
    finally:
        for key, value in saved.items():  # the session's other servers start without it
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    try:
        yield server
    finally:
        server.stop()


def test_switching_model_sets_with_unloads_holds_memory(switch_server):
    result = run_switching(switch_server, SWITCHES, prefix_root="switch_test")
    report = result.report(SWITCH_WARMUP)
    print(report)
    assert [j.error for j in result.jobs if j.error] == [], report
    assert all(len(j.files) == 1 and j.files[0].stat().st_size > 0 for j in result.jobs), report
    # Each block of SWITCH_EVERY jobs read its DiT again: the unload emptied the cache.
    assert result.dit_loads == -(-SWITCHES // SWITCH_EVERY), report
    _, growth = result.growth(SWITCH_WARMUP)
    assert len(result.jobs) >= SWITCH_WARMUP + 40 or "WAN_SOAK_SWITCH_JOBS" in os.environ
    assert growth <= MAX_GROWTH, report
    after_unload = [j.rss for j in result.jobs[SWITCH_WARMUP:] if j.index % SWITCH_EVERY == SWITCH_EVERY - 1]
    assert max(after_unload) <= 1.05 * min(after_unload), report
