"""``torchrun --nproc-per-node 2 -m wan generate ... --parallel ring=2`` (gloo on 127.0.0.1) writes the
same picture as one process, and ``--parallel`` without the processes it needs is refused before
any model loads."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from cli_runs import _args, files, spiece_bytes  # noqa: F401 (fixtures)
from parallel_workers import free_port

from wan.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_generate_equals_one_process(files, tmp_path):
    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert main(_args(files, one, "--quiet")) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "wan",
           *_args(files, two, "--quiet", "--parallel", "ring=2")]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a = np.asarray(Image.open(one), dtype=np.int16)
    b = np.asarray(Image.open(two), dtype=np.int16)
    # the latents agree to ~1e-7 relative; 8-bit rounding may flip a level where a value sits on a boundary
    assert a.shape == b.shape and np.abs(a - b).max() <= 1


def test_parallel_without_its_processes_is_refused(files, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(_args(files, out, "--quiet", "--parallel", "cfg=2,ulysses=2")) == 1
    err = capsys.readouterr().err
    assert "cfg=2,ulysses=2 needs 4 processes, but 1 was started" in err and not out.exists()
