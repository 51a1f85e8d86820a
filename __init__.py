"""ComfyUI entry point of the Wan video node pack: ComfyUI reads the two mappings below."""

import sys

if "folder_paths" in sys.modules:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:
    # Imported outside a running ComfyUI (pytest sets up this folder as a package because of this
    # very file): the node modules need ComfyUI's own modules, so expose nothing instead of failing.
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
