"""The main job's status line: the node running, its step/total from ComfyUI's websocket messages,
the elapsed time. Standard library only."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    """One status line for the prompt ``prompt_id`` (set once it is queued) of ``graph``."""

    def __init__(self, graph: dict):
        self.titles = {k: v.get("_meta", {}).get("title") or v.get("class_type", k) for k, v in graph.items()}
        self.prompt_id: str | None = None
        self.tty = sys.stdout.isatty()
        self.started = time.monotonic()
        self.node = None
        self.step = None
        self.lock = threading.Lock()
        self.last_line = ""
        self.last_print = 0.0

    def on_message(self, message: dict) -> None:
        """A websocket message (comfy_client.EventStream's callback, in its thread)."""
        kind, data = message.get("type", ""), message.get("data") or {}
        with self.lock:
            if self.node == "done" or self.prompt_id is None or data.get("prompt_id") != self.prompt_id:
                return
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
            if self.node != "done":
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
