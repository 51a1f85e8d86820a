"""In a Ray worker process, this package under the name its caller imported it by.

Inside ComfyUI the pack is imported as ``<folder name>`` (e.g. ``comfyui-wan-nodes``) and this library
as ``<folder name>.wan``; objects sent to an actor (the actor class, the job's options) are pickled
under those names. The pack's own ``__init__.py`` imports ComfyUI, which an actor process does not
have, so the name is made here as a bare package over the pack's folder: ``<name>.wan.*`` then imports
this library's modules alone. Ray runs ``install`` in each worker process before anything is unpickled
(``worker_process_setup_hook``); the name and folder travel in the environment."""

from __future__ import annotations

import os
import sys
import types

NAME_ENV, ROOT_ENV = "WAN_PACK_PACKAGE", "WAN_PACK_ROOT"


def environment(package: str, root: str) -> dict[str, str]:
    """The environment ``install`` reads: ``package`` is this library's ``__package__`` minus ``.wan``."""
    return {NAME_ENV: package, ROOT_ENV: root}


def install() -> None:
    name, root = os.environ.get(NAME_ENV, ""), os.environ.get(ROOT_ENV, "")
    if not name or not root or name in sys.modules:
        return
    package = types.ModuleType(name)
    package.__path__ = [root]  # a package whose submodules are found in the pack's folder
    package.__package__ = name
    sys.modules[name] = package
