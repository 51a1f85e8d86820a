"""ComfyUI adapters over ``wan``: every module here that defines NODE_CLASS_MAPPINGS is registered.

Modules are discovered rather than listed so that adding a node family means adding one file.
An import error is not swallowed: ComfyUI then reports the pack as failed, which the tests check.
"""

import importlib
import pkgutil

from ._examples import place_example_inputs
from ._validate import guard_sockets

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name.startswith("_"):
        continue
    _module = importlib.import_module(f".{_info.name}", __name__)
    NODE_CLASS_MAPPINGS.update({k: guard_sockets(v) for k, v in getattr(_module, "NODE_CLASS_MAPPINGS", {}).items()})
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_module, "NODE_DISPLAY_NAME_MAPPINGS", {}))

place_example_inputs()
