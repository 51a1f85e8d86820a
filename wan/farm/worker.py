"""One farm worker: a headless ComfyUI carrying this pack, owned by a Ray actor (``ComfyWorker``).

The farm never speaks to a worker's ComfyUI itself: the actor runs on the worker's machine, starts
ComfyUI on 127.0.0.1 there, runs a prompt through ComfyUI's own HTTP API and websocket, and streams
the prompt's websocket messages back as the items of a Ray generator, its history entry last. So the
farm works across machines with nothing but Ray between them.

ComfyUI is started and spoken to by scripts/comfy_process.py and scripts/comfy_client.py, the one
client of its API in this repository (the tests and scripts/main_job.py use it too); a farm runs from
a checkout of the pack, so they lie beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..errors import WanFileError

PACK_NAME = "comfyui-wan-nodes"  # the pack's folder name under each worker's custom_nodes
HISTORY = "farm_history"  # the type of the stream's last item: the prompt's history entry


def pack_version(pack: str | os.PathLike) -> str:
    """The version a pack folder declares (``wan/__init__.py``'s ``__version__``), read without importing it."""
    init = Path(pack) / "wan" / "__init__.py"
    try:
        found = re.search(r"""^__version__\s*=\s*["']([^"']+)""", init.read_text("utf-8"), re.M)
    except OSError as error:
        raise WanFileError(init, f"cannot read the pack's version: {error}") from error
    if not found:
        raise WanFileError(init, "declares no __version__")
    return found.group(1)


def _comfy_modules(pack: Path):
    scripts = str(pack / "scripts")
    if scripts not in sys.path:  # a Ray worker process of its own: nothing else imports from here
        sys.path.insert(0, scripts)
    import comfy_client  # noqa: PLC0415 - lives in the pack's scripts/, found only once on the path
    import comfy_process  # noqa: PLC0415

    return comfy_client, comfy_process


class WorkerLost(RuntimeError):
    """The worker's ComfyUI went away while it ran a prompt."""


class ComfyWorker:
    """Ray actor body (the farm wraps it with ``ray.remote``): a ComfyUI under ``base/w<index>`` whose
    models and input are the shared folders and whose outputs go to ``base/output/w<index>``.

    ``device``: "cpu" or a CUDA device index (the actor's environment already limits what it sees)."""

    def __init__(self, index: int, comfyui: str, pack: str, base: str, models: str, input_dir: str | None = None,
                 device: str = "cpu", model_paths_yaml: str | None = None):
        self.index = index
        self.comfyui, self.pack, self.base = Path(comfyui), Path(pack), Path(base)
        self.models = Path(models)
        self.input_dir = Path(input_dir) if input_dir else None
        self.device, self.model_paths_yaml = device, model_paths_yaml
        self.server = None

    # ---- lifecycle ------------------------------------------------------------------------------

    def version(self) -> str:
        """The version of the pack this worker would install (checked by the farm before it starts it)."""
        return pack_version(self.pack)

    def start(self, timeout: float = 180.0) -> str:
        """Start (or restart) ComfyUI; its URL on this machine."""
        _, process = _comfy_modules(self.pack)
        self.stop()
        home = self.base / f"w{self.index}"
        root = process.shadow_root(self.comfyui, home / "_comfyui_root")
        nodes = home / "custom_nodes"
        shutil.rmtree(nodes, ignore_errors=True)
        nodes.mkdir(parents=True)
        (nodes / PACK_NAME).symlink_to(self.pack.resolve(), target_is_directory=True)
        output = self.base / "output" / f"w{self.index}"
        output.mkdir(parents=True, exist_ok=True)
        args = ["--base-directory", str(home), "--output-directory", str(output),
                "--database-url", "sqlite:///:memory:"]
        args += ["--cpu"] if self.device == "cpu" else []
        if self.input_dir is not None:
            args += ["--input-directory", str(self.input_dir)]
        if self.model_paths_yaml:
            args += ["--extra-model-paths-config", self.model_paths_yaml]
        models = home / "models"
        if models.is_symlink() or models.exists():
            models.unlink() if models.is_symlink() else shutil.rmtree(models)
        models.symlink_to(self.models.resolve(), target_is_directory=True)
        server = process.LocalComfyUI(home / "comfyui.log")
        server.launch(root, args, timeout, {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}, cwd=home)
        failures = server.import_failures(PACK_NAME)
        if failures:
            server.stop()
            raise RuntimeError(f"worker {self.index}: ComfyUI did not import the pack:\n" + "\n".join(failures))
        self.server = server
        return server.url

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def comfy_pid(self) -> int | None:
        """The ComfyUI process id (None when stopped): the farm's tests kill it to simulate a lost worker."""
        return None if self.server is None or self.server.proc is None else self.server.pid

    # ---- prompts --------------------------------------------------------------------------------

    def run(self, prompt_id: str, graph: dict, extra_data: dict | None = None, timeout: float = 3600.0):
        """Run one prompt (under the farm's id); yields its websocket messages, then
        ``{"type": HISTORY, "data": entry}``. Raises WorkerLost if ComfyUI dies meanwhile."""
        client_mod, _ = _comfy_modules(self.pack)
        server = self.server
        if server is None:
            raise WorkerLost(f"worker {self.index} has no ComfyUI running")
        stream = server.events()
        try:
            stream.open()
        except client_mod.ComfyError as error:
            raise WorkerLost(f"worker {self.index}: {error}") from error
        try:
            body = {"prompt": graph, "client_id": server.client_id, "prompt_id": prompt_id,
                    "extra_data": extra_data or {}}
            status, answer = server.request("POST", "/prompt", body)
            if status != 200:
                yield {"type": HISTORY, "data": _refused(graph, answer)}
                return
            seen, deadline = 0, time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not server.proc or server.proc.poll() is not None:
                    raise WorkerLost(f"worker {self.index}: ComfyUI exited while running prompt {prompt_id}")
                messages = stream.messages[seen:]
                seen += len(messages)
                for message in messages:
                    if (message.get("data") or {}).get("prompt_id") == prompt_id:
                        yield message
                try:
                    entry = server.history(prompt_id)
                except (OSError, client_mod.ComfyError) as error:
                    raise WorkerLost(f"worker {self.index}: ComfyUI stopped answering: {error}") from error
                if entry:
                    time.sleep(0.1)  # the last messages (execution_success) come just after the entry
                    for message in stream.messages[seen:]:
                        if (message.get("data") or {}).get("prompt_id") == prompt_id:
                            yield message
                    yield {"type": HISTORY, "data": entry}
                    return
                time.sleep(0.1)
            raise WorkerLost(f"worker {self.index}: prompt {prompt_id} did not finish within {timeout:.0f} s")
        finally:
            stream.close()

    def view(self, query: dict) -> tuple[int, bytes, str]:
        """ComfyUI's GET /view on this worker: (status, body, content type)."""
        if self.server is None:
            return 503, b"worker stopped", "text/plain"
        url = f"{self.server.url}/view?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return response.status, response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as error:
            return error.code, error.read(), "text/plain"

    def call(self, method: str, path: str, body=None):
        """Any other request (GET /object_info, POST /free, /interrupt): (status, JSON answer or text)."""
        if self.server is None:
            return 503, "worker stopped"
        return self.server.request(method, path, body)


def _refused(graph: dict, answer) -> dict:
    """A history entry for a prompt the worker's ComfyUI refused (invalid graph)."""
    message = answer.get("error", {}).get("message", str(answer)) if isinstance(answer, dict) else str(answer)
    return {"prompt": [0, None, graph, {}, []], "outputs": {}, "refused": answer,
            "status": {"status_str": "error", "completed": False, "messages": [["execution_error", {
                "node_id": None, "node_type": "prompt", "exception_type": "PromptRefused",
                "exception_message": message}]]}}
