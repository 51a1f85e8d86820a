"""Decode straight to a file keeps host RAM flat in the frame count: a 1,001-frame 832x480 video
decoded to an mp4 peaks no higher than a 101-frame one + 10%, each measured by its own process
(VmHWM, read by the child when done; ffmpeg is a process of its own and not counted). Held frames
would show: 1,001 frames are 1.2 GB as uint8, 4.8 GB as float32.

Slow (about a minute on 2 shared cores; marked ``slow`` by its name): the VAE is the cheapest one
with Wan 2.1's real compression (tests/support/stream_vae.py). The child allocates with a fixed
mmap threshold, so each freed buffer goes back to the system and the peaks compare the buffers
held, not glibc's heap."""

import os
import subprocess
import sys
from pathlib import Path

SUPPORT = Path(__file__).resolve().parents[1] / "support"
REPO = SUPPORT.parents[1]


def _peak(frames: int, out: Path) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(SUPPORT)]), MALLOC_MMAP_THRESHOLD_="65536")
    run = subprocess.run([sys.executable, str(SUPPORT / "stream_vae.py"), str(frames), str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.stat().st_size > 0
    return int(run.stdout.split()[-1])


def test_peak_rss_flat_from_100_to_1000_frames(tmp_path):
    short = _peak(101, tmp_path / "short.mp4")
    long = _peak(1001, tmp_path / "long.mp4")
    print(f"peak RSS: 101 frames {short / 2**20:.0f} MiB, 1001 frames {long / 2**20:.0f} MiB")
    assert long <= short * 1.10, (short, long)
