"""Wan 2.1 / 2.2 video diffusion in plain PyTorch.

This package knows nothing of ComfyUI and uses relative imports only, so it works both as
``import wan`` from the repository root and as a sub-package of the ComfyUI node pack.
Nothing heavy is imported here: submodules are imported where they are used.
"""

__version__ = "0.1.0"
