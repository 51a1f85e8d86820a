#!/usr/bin/env python3
"""The README's main job: set everything up, start ComfyUI headless with this pack, queue a bundled
workflow over ComfyUI's HTTP API and print the path of the video it wrote.

Runs with any Python 3.10+ and only the standard library until ``scripts/setup.sh`` has built
``./.venv``; it then re-runs itself inside that environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
PACK = "comfyui-wan-nodes"
DEFAULT_PROMPT = "a bonfire on a beach at night, sparks rising into the starry sky"


def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _bootstrap() -> None:
    print("Setting up ./.venv (first run downloads PyTorch and ComfyUI's requirements) ...", flush=True)
    subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], check=True)
    python = str(VENV / "bin" / "python")
    os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--workdir", default=str(REPO / "out" / "comfyui"),
                        help="ComfyUI base directory (models/, output/, custom_nodes/); kept between runs")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the video")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from comfy_server import ComfyServer, ComfyServerError  # the same headless runner the tests use

    workdir = Path(args.workdir).resolve()
    for stale in ("_comfyui_root", "custom_nodes"):
        # Links from an earlier run are re-made: the ComfyUI copy or this checkout may have moved.
        subprocess.run(["rm", "-rf", str(workdir / stale)], check=True)
    workdir.mkdir(parents=True, exist_ok=True)
    graph = json.loads((REPO / "workflows" / "video_combine_demo.api.json").read_text())
    server = ComfyServer(workdir, {PACK: REPO})
    print(f"Starting ComfyUI headless (log: {server.log_path}) ...", flush=True)
    started = time.monotonic()
    try:
        server.start(timeout=180)
        failures = server.import_failures(PACK)
        if failures:
            print("ComfyUI could not import the pack:\n" + "\n".join(failures), file=sys.stderr)
            return 1
        print(f"ComfyUI is up at {server.url}; queueing workflows/video_combine_demo.api.json", flush=True)
        print(f"prompt: {args.prompt!r} (no Wan model files are used by this demo graph)", flush=True)
        outputs = server.run(graph, timeout=args.timeout)
    except ComfyServerError as error:
        print(f"main job failed: {error}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    paths = [
        server.output_dir / item.get("subfolder", "") / item["filename"]
        for node_out in outputs.values()
        for item in node_out.get("images", [])
    ]
    for path in paths:
        print(f"video: {path}")
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0 if paths else 1


if __name__ == "__main__":
    if not _in_venv():
        _bootstrap()
    sys.exit(main(sys.argv[1:]))
