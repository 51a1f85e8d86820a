"""Command-line entry point: ``python -m wan <command> ...``.

Each command lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
they are imported only when chosen, so ``python -m wan --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "generate": ("generate", "generate a video or image from a prompt"),
    "quantize": ("quantize", "write a GGUF file from a safetensors checkpoint"),
    "models": ("models", "list, download and verify model files"),
    "farm": ("farm", "serve many queued ComfyUI prompts over many GPUs on Ray"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m wan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module_name, help_text = COMMANDS[argv[0]]
    try:
        module = importlib.import_module(f".{module_name}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(module_name):
            print(f"python -m wan {argv[0]}: not available in this version", file=sys.stderr)
            return 2
        raise
    cmd_parser = argparse.ArgumentParser(prog=f"python -m wan {argv[0]}", description=help_text)
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)
