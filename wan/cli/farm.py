"""``python -m wan farm``: many queued ComfyUI prompts over many GPUs (or CPU workers) on Ray.

    python -m wan farm --comfyui ~/ComfyUI --port 8288          # one worker per GPU of a local Ray cluster
    python -m wan farm --comfyui ~/ComfyUI --address head:6379  # join a cluster started with `ray start`
    python -m wan farm --comfyui ~/ComfyUI --workers 2          # CPU workers where there is no GPU

Each worker is a headless ComfyUI carrying this pack, on its own 127.0.0.1 port, reading the shared
model folders. The farm serves one endpoint compatible with ComfyUI's /prompt, /history, /view, /queue
and /ws: point a client (scripts/comfy_client.py, anything speaking ComfyUI's API) at it. A worker lost mid-prompt has the prompt re-queued once and the client told; outputs are kept
per worker under <base>/output/w<index>/ and served by /view.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from ..errors import WanError
from ..farm.launch import FarmOptions, serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--comfyui", required=True, type=Path, help="the ComfyUI folder (holding main.py)")
    parser.add_argument("--models", type=Path, help="shared model folders (default: <comfyui>/models)")
    parser.add_argument("--input", type=Path, help="shared input folder (default: <comfyui>/input)")
    parser.add_argument("--model-paths-yaml", type=Path,
                        help="an extra_model_paths.yaml for the workers (the one beside main.py is not read)")
    parser.add_argument("--base", type=Path, default=Path("farm"),
                        help="working folder: the workers' homes and output/w<index> (default: ./farm)")
    parser.add_argument("--workers", type=int, help="how many workers (default: one per GPU; required on CPU)")
    parser.add_argument("--address", help="HOST:PORT of a Ray cluster to join (default: start a local one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8188, help="port to serve on (default 8188)")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds a worker may take to start")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = FarmOptions(comfyui=args.comfyui, base=args.base, models=args.models, input_dir=args.input,
                          workers=args.workers, address=args.address, host=args.host, port=args.port,
                          model_paths_yaml=args.model_paths_yaml, start_timeout=args.start_timeout)
    try:
        asyncio.run(serve(options, on_ready=lambda line: print(line, flush=True)))
    except WanError as error:
        print(f"python -m wan farm: {error}", file=sys.stderr)
        return 2
    return 0
