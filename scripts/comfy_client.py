"""The one client of ComfyUI's HTTP API in this repository: scripts/main_job.py, make_ui_workflow.py,
the server tests (tests/support/comfy_server.py) and bench/soak.py queue prompts, poll the history,
interrupt, free memory, read /object_info and follow the websocket through it.

It lives in scripts/ and uses only the standard library (urllib, json) because main_job.py imports
it with whatever Python the user has, before ``./.venv`` exists; a module under ``wan/`` would run
``wan/__init__.py`` and its torch imports first. The websocket (progress messages) alone needs
aiohttp, which ComfyUI itself depends on: where it is missing, ``EventStream.open`` raises
ImportError and callers go on without progress.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path


class ComfyError(RuntimeError):
    """ComfyUI refused a prompt, a prompt failed, a wait ran out or the server went away."""


class ComfyClient:
    """ComfyUI at ``url`` (``http://host:port``), speaking as ``client_id`` (its websocket messages
    for the prompts queued here go to that id)."""

    def __init__(self, url: str, client_id: str | None = None):
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex

    # ---- hooks for a server started here (comfy_process.LocalComfyUI) ---------------------------

    def check_running(self) -> None:
        """Raise ComfyError if the server is known to have exited (a remote one: never known)."""

    def context(self) -> str:
        """Text appended to errors (a local server's log tail)."""
        return ""

    # ---- requests -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body=None, timeout: float = 30.0):
        """(HTTP status, the JSON answer or its text); HTTP errors are answers, not exceptions.
        Raises OSError (urllib.error.URLError) when nothing answers."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, _json_or_text(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _json_or_text(error.read())

    def get(self, path: str, timeout: float = 30.0):
        status, body = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise ComfyError(f"GET {path} answered {status}: {body}")
        return body

    def object_info(self, node: str | None = None) -> dict:
        info = self.get("/object_info" + (f"/{node}" if node else ""))
        return info[node] if node else info

    def queue_running(self) -> bool:
        """Whether a prompt is executing now."""
        return bool(self.get("/queue")["queue_running"])

    def interrupt(self, timeout: float = 30.0) -> None:
        """Stop the running prompt at its next cancel point (ComfyUI's Cancel button)."""
        self.request("POST", "/interrupt", {}, timeout=timeout)

    def free(self, unload_models: bool = True, free_memory: bool = True) -> int:
        """ComfyUI's "free model and node cache" (POST /free); returns the HTTP status."""
        status, _ = self.request("POST", "/free", {"unload_models": unload_models, "free_memory": free_memory})
        return status

    # ---- prompts --------------------------------------------------------------------------------

    def post_prompt(self, graph: dict, workflow: dict | None = None) -> tuple[int, dict]:
        """POST /prompt without raising: (HTTP status, ComfyUI's JSON answer, errors included).

        workflow: the UI graph a frontend sends along (it reaches the nodes as extra_pnginfo).
        """
        body = {"prompt": graph, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        return self.request("POST", "/prompt", body)

    def queue(self, graph: dict, workflow: dict | None = None) -> str:
        """Queue ``graph``; its prompt id. Raises ComfyError naming each refused input."""
        status, body = self.post_prompt(graph, workflow)
        if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
            raise ComfyError(f"ComfyUI refused the prompt ({status}):\n" + describe_refusal(body))
        return body["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of a finished prompt (successful or not); None while it is queued or running."""
        history = self.get(f"/history/{prompt_id}")
        return history.get(prompt_id) if isinstance(history, dict) else None

    def wait(self, prompt_id: str, timeout: float = 120.0, poll: float = 0.1, on_poll=None) -> dict:
        """Poll the history until ``prompt_id`` has finished; its entry. ``on_poll()`` runs between polls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry:  # ComfyUI records a prompt in its history only once it has finished
                return entry
            self.check_running()
            if on_poll is not None:
                on_poll()
            time.sleep(poll)
        raise ComfyError(f"prompt {prompt_id} did not finish within {timeout:.0f} s" + self.context())

    def run(self, graph: dict, timeout: float = 120.0, workflow: dict | None = None) -> dict:
        """Queue ``graph``, wait, and return its outputs (node id -> UI dict); raise if it failed."""
        entry = self.wait(self.queue(graph, workflow), timeout)
        failure = failure_text(entry)
        if failure is not None:
            raise ComfyError(f"the prompt failed in {failure}" + self.context())
        return entry["outputs"]

    def events(self, on_message=None) -> "EventStream":
        """This client's websocket messages (not yet connected: call ``open()``)."""
        ws_url = "ws" + self.url[len("http"):] + f"/ws?clientId={self.client_id}"
        return EventStream(ws_url, on_message)


# ---- history entries ----------------------------------------------------------------------------

def execution_error(entry: dict) -> dict | None:
    """The ``execution_error`` message of a history entry, or None if the prompt did not fail in a node."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return None


def failure_text(entry: dict) -> str | None:
    """Where and why a finished prompt failed ("node 6 (WanSampler): ValueError: ..."), or None."""
    error = execution_error(entry)
    if error is not None:
        return (f"node {error.get('node_id')} ({error.get('node_type')}): {error.get('exception_type')}: "
                f"{error.get('exception_message')}")
    if entry.get("status", {}).get("status_str") == "error":
        return "an unknown node (ComfyUI recorded an error without a message)"
    return None


def output_files(outputs: dict, folders: dict[str, Path]) -> list[Path]:
    """The files named in a prompt's outputs (``entry["outputs"]``), as paths under ``folders``
    (output type -> folder: {"output": ..., "temp": ...}; an item without a type is an output)."""
    paths = []
    for node_out in outputs.values():
        for items in node_out.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item:
                    root = folders.get(item.get("type", "output"), folders["output"])
                    paths.append(Path(root) / item.get("subfolder", "") / item["filename"])
    return paths


def describe_refusal(body) -> str:
    """ComfyUI's answer to a refused POST /prompt as one line per problem."""
    if not isinstance(body, dict):
        return str(body)
    lines = []
    error = body.get("error") or {}
    if isinstance(error, dict):
        lines.append(f"  {error.get('message', '')} {error.get('details', '')}".rstrip())
    for node_id, node in (body.get("node_errors") or {}).items():
        for e in node.get("errors", []):
            lines.append(f"  node {node_id} ({node.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "\n".join(line for line in lines if line.strip()) or json.dumps(body)


def _json_or_text(raw: bytes):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


# ---- websocket ----------------------------------------------------------------------------------

class EventStream:
    """ComfyUI's websocket messages for one client id ({"type": "progress", "data": {...}}, ...),
    read in a daemon thread, kept in ``messages`` and passed to ``on_message`` as they come."""

    def __init__(self, url: str, on_message=None):
        self.url = url
        self.on_message = on_message
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._ended = threading.Event()
        self._error: BaseException | None = None
        self._loop = self._task = self._thread = None

    def open(self, timeout: float = 30.0) -> "EventStream":
        """Connect; raises ImportError without aiohttp and ComfyError if no connection is made."""
        import aiohttp  # noqa: F401  (fail here, in the caller's thread)

        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._listen())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._connected.wait(0.05):
            if self._ended.is_set() or time.monotonic() > deadline:
                self.close()
                raise ComfyError(f"websocket {self.url} did not connect: {self._error or 'timed out'}")
        return self

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception as error:  # noqa: BLE001 - reported by open() or ends the stream
            self._error = error
        finally:
            self._loop.close()
            self._ended.set()

    async def _listen(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(self.url, heartbeat=30) as ws:
            self._connected.set()
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue  # binary frames carry preview images
                message = json.loads(msg.data)
                with self._cond:
                    self.messages.append(message)
                    self._cond.notify_all()
                if self.on_message is not None:
                    self.on_message(message)

    def wait_for(self, predicate, timeout: float = 120.0) -> dict:
        """The first message (received so far or later) for which ``predicate(message)`` is true."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for message in self.messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ComfyError(f"no such message within {timeout:.0f} s; last: {self.messages[-5:]}")
                self._cond.wait(left)

    def close(self) -> None:
        if self._task is not None:
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:
                pass  # the loop has ended already
        if self._thread is not None:
            self._thread.join(10)
