#!/usr/bin/env python3
"""The README's main job: set up, fetch the default models, start ComfyUI headless with this pack,
queue the bundled text-to-video workflow over ComfyUI's HTTP API and print the path of the video.

Runs with any Python 3.10+ and only the standard library until ``scripts/setup.sh`` has built
``./.venv``; it then re-runs itself inside that environment.

ComfyUI: the one named by ``--comfyui DIR`` or ``$COMFYUI_PATH`` (the pack is linked into its
``custom_nodes`` and its ``main.py`` runs with its own folders), else the copy that setup.sh
installed, run with ``--workdir`` as its base folder. ``--tiny`` runs the same graph on tiny random
models written by ``wan.install.tiny`` into a folder of their own: a check of the install whose video is noise.

Beside it: main_job_install.py (which ComfyUI, which folders), main_job_models.py (the model files
and the graph), main_job_progress.py (the status line), comfy_process.py and comfy_client.py
(the server and its HTTP API, shared with the tests).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from comfy_client import ComfyError, failure_text, output_files
from comfy_process import LocalComfyUI
from main_job_install import PACK, REPO, VENV, Failure, Install
from main_job_models import WORKFLOW, build_graph, fetch_models, write_tiny_models
from main_job_progress import Progress

DEFAULT_PROMPT = "a bonfire on a beach at night, sparks rising into the starry sky"


def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _bootstrap() -> None:
    print("Setting up ./.venv (the first run downloads PyTorch and ComfyUI's requirements) ...", flush=True)
    subprocess.run(["bash", str(REPO / "scripts" / "setup.sh")], check=True)
    python = str(VENV / "bin" / "python")
    os.execv(python, [python, str(Path(__file__).resolve()), *sys.argv[1:]])


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
    parser.add_argument("--tiny", action="store_true",
                        help="run the graph on tiny random models (proves the install; the video is noise)")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH") or None,
                        help="an existing ComfyUI folder (default: $COMFYUI_PATH, else the copy setup.sh installed)")
    parser.add_argument("--workdir", default=None,
                        help="base folder (models/, output/, custom_nodes/) for the installed ComfyUI copy "
                             "(default: out/comfyui, or out/comfyui-tiny with --tiny); kept between runs")
    parser.add_argument("--timeout", type=float, default=6 * 3600.0, help="seconds to wait for the video")
    return parser.parse_args(argv)


def _has_accelerator() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


def run_graph(server: LocalComfyUI, graph: dict, timeout: float) -> dict:
    """Queue ``graph`` and wait for it with a status line; its history entry."""
    progress = Progress(graph)
    try:
        events = server.events(progress.on_message).open(timeout=10)
    except (ImportError, ComfyError):
        events = None  # no websocket (no aiohttp): the elapsed time alone shows
    try:
        progress.prompt_id = server.queue(graph)
        return server.wait(progress.prompt_id, timeout, poll=0.5, on_poll=progress.tick)
    finally:
        progress.finish()
        if events is not None:
            events.close()


def _terminate(signum, frame):
    # A `kill` (or a CI time-out) must stop the ComfyUI process group too: unwind through the finally.
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        install = Install(args)
        where = f"ComfyUI at {install.comfyui}" if install.user else "the ComfyUI copy installed in ./.venv"
        print(f"Using {where}; base folder {install.base}", flush=True)
        if args.tiny:
            print("--tiny: writing tiny random models (the video will be noise; this checks the install)",
                  flush=True)
            catalog = write_tiny_models(install)
        else:
            print("Model files of the default set:", flush=True)
            catalog = fetch_models(install)
        graph = build_graph(args.prompt, catalog, args.tiny)
        install.link_pack()
        server = LocalComfyUI(install.base / "main_job_comfyui.log")
        print(f"Starting ComfyUI headless (log: {server.log_path}) ...", flush=True)
        try:
            server.launch(install.server_root(), install.server_args(_has_accelerator()), timeout=300)
            failures = server.import_failures(PACK)
            if failures:
                raise Failure("ComfyUI could not import the pack:\n" + "\n".join(failures) + server.context())
            print(f"ComfyUI is up at {server.url}; queueing workflows/{WORKFLOW}.api.json", flush=True)
            print(f"prompt: {args.prompt!r}", flush=True)
            entry = run_graph(server, graph, args.timeout)
        except KeyboardInterrupt:
            try:
                server.interrupt(timeout=5)  # so that ComfyUI stops promptly on SIGTERM
            except OSError:
                pass
            raise
        finally:
            server.stop()
        failure = failure_text(entry)
        if failure:
            raise Failure(f"the workflow failed in {failure}" + server.context())
        paths = output_files(entry.get("outputs", {}), {"output": install.base / "output",
                                                        "temp": install.base / "temp"})
        if not paths:
            raise Failure("the workflow finished but wrote no file" + server.context())
    except (Failure, ComfyError) as failure:
        print(str(failure), file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; ComfyUI was stopped", file=sys.stderr)
        return 130
    for path in paths:
        print(f"video: {path}")
    if args.tiny:
        print("(made by tiny random models: the video is noise. The install works; run without --tiny "
              "for a real video.)")
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    if not _in_venv():
        _bootstrap()
    sys.exit(main(sys.argv[1:]))
