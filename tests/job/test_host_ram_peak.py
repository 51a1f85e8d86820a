"""Host RAM of one job (issue 20 item 3): load a DiT, the text encoder and the VAE from their files,
sample, decode straight to a video file; the process's peak RSS above its level before loading stays
within the files' bytes x 1.25 + 96 MiB (activations, the encoded video's buffers, the tokenizer).
In a child process: torch's first-use allocations are paid by a warm-up job on tiny files, freed
memory goes back to the OS (large allocations mmap'd), and the peak (VmHWM) is reset before the
measured job. A DiT of ~270 MB makes the bound bite: a loader that held two copies of it fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import random_weights
from tiny_models import write_set
from wan.models.dit.config import DIT_PRESETS

FACTOR, SLACK = 1.25, 96 << 20
CHILD = r'''
import gc, json, sys
import torch
from wan.job import load
from wan.job.options import LoadOptions
from wan.job.pipelines import T2VPipeline
from wan.runtime.host_memory import release_host_memory

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

files, out, double = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
opts = LoadOptions(dtype=torch.bfloat16, device="cpu", attention="sdpa")
job = dict(width=64, height=64, num_frames=5, steps=1, cfg=3.0, seed=1, fps=8)

def run(dit, out):
    pipe = T2VPipeline.from_files(dit, files["umt5"], files["vae21"], options=opts)
    twin = load.load_dit(dit, opts) if double else None  # the deliberate second copy
    pipe.write(out, "a red fox", "blur", **job)
    return twin

run(files["t2v_gguf"], out + ".warm.webm")
gc.collect()
release_host_memory()
open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS
base = status("VmRSS")
twin = run(files["dit"], out)
print(json.dumps({"base": base, "peak": status("VmHWM")}))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ram")
    out = {k: str(v) for k, v in write_set(d, only=("t2v_gguf", "umt5", "vae21")).items()}
    cfg = DIT_PRESETS["t2v_1_3b"].tiny(dim=1536, ffn_dim=4096, num_layers=4)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in random_weights(cfg).items()}, str(d / "dit.safetensors"))
    out["dit"] = str(d / "dit.safetensors")
    return out


def _job(files, tmp_path, double):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(Path(__file__).parents[2]))
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(files), str(tmp_path / "fox.webm"),
                        "1" if double else "0"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    return m["peak"] - m["base"]


def test_a_job_peaks_within_its_files(files, tmp_path):
    file_bytes = sum(os.path.getsize(files[k]) for k in ("dit", "umt5", "vae21"))
    bound = FACTOR * file_bytes + SLACK
    rise = _job(files, tmp_path, double=False)
    print(f"files {file_bytes / 2**20:.0f} MiB, peak above baseline {rise / 2**20:.0f} MiB, "
          f"bound {bound / 2**20:.0f} MiB")
    assert rise <= bound
    assert (tmp_path / "fox.webm").stat().st_size > 0
    # the bound is tight enough to catch a second copy of the DiT
    doubled = _job(files, tmp_path, double=True)
    print(f"with a second copy of the DiT: {doubled / 2**20:.0f} MiB")
    assert doubled > bound
