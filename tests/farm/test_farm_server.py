"""``python -m wan farm`` with 2 CPU workers (real ComfyUI 0.3.75 processes carrying this pack, on the
tiny model files), driven over HTTP and the websocket by scripts/comfy_client.py as a user's client is.

Checked: 8 queued tiny T2V prompts all finish, every output file is written once (no file missing,
none twice, nothing else in the workers' output folders) and /view serves it; both workers ran some;
a worker whose ComfyUI is killed mid-prompt has that prompt finished by the other worker, the client
told on the websocket and in the history; bad input fails before any job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tiny_models
from comfy_client import ComfyClient, ComfyError, failure_text, output_files
from comfy_installs import comfy_install
from comfy_process import free_port
from workflow_graphs import load_api, shrink

pytestmark = pytest.mark.server
REPO = Path(__file__).resolve().parents[2]
ROLES = ("t2v_gguf", "umt5", "vae21")  # what the bundled t2v graph loads


def _farm_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "wan", "farm", *map(str, args)]


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    base = tmp_path_factory.mktemp("farm")
    tiny_models.write_set(base / "models", only=ROLES)
    port = free_port()
    log = open(base / "farm.log", "wb")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_farm_cmd("--comfyui", comfy_install("0.3.75").root, "--workers", 2, "--models",
                                      base / "models", "--base", base / "work", "--port", port),
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = ComfyClient(f"http://127.0.0.1:{port}")
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail("the farm exited while starting:\n" + (base / "farm.log").read_text(), pytrace=False)
            try:
                client.get("/farm", timeout=5)
                break
            except (OSError, ComfyError):
                if time.monotonic() - started > 400:
                    pytest.fail("the farm did not answer within 400 s:\n" + (base / "farm.log").read_text())
                time.sleep(0.5)
        print(f"farm with 2 workers ready in {time.monotonic() - started:.1f} s")
        yield client, base / "work"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _graph(tag: str, seed: int, steps: int | None = None) -> dict:
    graph = shrink(load_api("t2v"), tag)
    graph["6"]["inputs"]["seed"] = seed
    if steps is not None:
        graph["6"]["inputs"]["steps"] = steps
    return graph


def test_eight_prompts_over_two_workers(farm):
    client, work = farm
    started = time.monotonic()
    events = client.events().open()
    try:
        ids = [client.queue(_graph(f"farm_{i}", seed=i)) for i in range(8)]
        entries = {pid: client.wait(pid, timeout=600) for pid in ids}
        done = {m["data"]["prompt_id"] for m in events.messages if m.get("type") == "execution_success"}
    finally:
        events.close()
    print(f"8 tiny prompts on 2 workers: {time.monotonic() - started:.1f} s")
    for pid, entry in entries.items():
        assert failure_text(entry) is None, failure_text(entry)
    assert done == set(ids), "every prompt's execution_success reaches the client through the farm's /ws"
    files = [f for e in entries.values() for f in output_files(e["outputs"], {"output": work / "output"})]
    assert len(files) == 8 and len(set(files)) == 8, files
    assert all(f.is_file() and f.stat().st_size > 0 for f in files)
    written = sorted(p for p in (work / "output").rglob("*") if p.is_file())
    assert written == sorted(files), "each prompt wrote its file once and nothing else was written"
    workers = {entry["farm"]["worker"] for entry in entries.values()}
    assert workers == {0, 1}, f"both workers are used, got {workers}"
    item = next(iter(next(iter(entries[ids[0]]["outputs"].values())).values()))[0]
    status, _ = client.request("GET", "/view?filename={filename}&subfolder={subfolder}&type={type}".format(**item))
    assert status == 200


def test_killed_worker_has_its_prompt_finished_by_the_other(farm):
    client, work = farm
    events = client.events().open()
    try:
        # long enough that the kill lands mid-prompt: the tiny model takes well under a second a step
        pid = client.queue(_graph("farm_killed", seed=99, steps=80))
        events.wait_for(lambda m: m.get("type") == "progress" and m["data"].get("prompt_id") == pid, timeout=300)
        state = client.get("/farm")["workers"]
        (victim,) = [i for i, w in state.items() if pid in w["running"]]
        os.killpg(state[victim]["comfy_pid"], signal.SIGKILL)
        entry = client.wait(pid, timeout=600)
        told = events.wait_for(lambda m: m.get("type") == "farm_requeued", timeout=10)
    finally:
        events.close()
    assert failure_text(entry) is None, failure_text(entry)
    assert entry["farm"]["worker"] != int(victim), "the other worker finished it"
    assert told["data"]["prompt_id"] == pid and told["data"]["worker"] == int(victim)
    assert len(entry["farm"]["notes"]) == 1 and f"worker {victim} was lost" in entry["farm"]["notes"][0]
    (video,) = output_files(entry["outputs"], {"output": work / "output"})
    assert video.is_file()


def test_an_address_that_does_not_answer_fails_before_any_job(tmp_path):
    port = free_port()  # nothing listens there
    result = subprocess.run(_farm_cmd("--comfyui", comfy_install("0.3.75").root, "--workers", 1, "--address",
                                      f"127.0.0.1:{port}", "--base", tmp_path), cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers there" in result.stderr
    assert not (tmp_path / "w0").exists(), "no worker was started"
