"""``python -m wan models list | download NAME... | verify [WORKFLOW...]``: the model files the bundled
workflows need, fetched into and checked in a ComfyUI install.

The install is ``--comfyui DIR``, else ``$COMFYUI_PATH``, else ``./ComfyUI``; files go to
``<comfyui>/models/<folder>/<filename>``. Exit status: 0 all good, 1 problems found, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import WanError
from ..install.catalog import load_catalog
from ..install.download import download_files, file_url, hub_endpoint
from ..install.verify import verify


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default=None, help=argparse.SUPPRESS)  # tests swap in a small one
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p = sub.add_parser("list", help="list the catalogued files and the workflows that need them")
    p.add_argument("--comfyui", default=None, help="ComfyUI folder, to show which files are there")
    p = sub.add_parser("download", help="download files: a file name, a workflow name (its default "
                       "files) or 'default' (the small text-to-video set)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--comfyui", default=None, help="ComfyUI folder (default $COMFYUI_PATH or ./ComfyUI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p = sub.add_parser("verify", help="report, per workflow, which files are present, missing or wrong")
    p.add_argument("workflows", nargs="*", metavar="WORKFLOW", help="only these workflows (default: all)")
    p.add_argument("--comfyui", default=None, help="ComfyUI folder (default $COMFYUI_PATH or ./ComfyUI)")
    p.add_argument("--checksum", action="store_true", help="also compare sha256 (reads every byte)")


def comfyui_dir(arg: str | None) -> str:
    return arg or os.environ.get("COMFYUI_PATH") or os.path.join(".", "ComfyUI")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _list(cat, args) -> int:
    root = comfyui_dir(args.comfyui) if args.comfyui or os.environ.get("COMFYUI_PATH") else None
    print(f"{'name':<46} {'role':<13} {'variant':<22} {'size':>8}  folder / workflows")
    for f in cat.files:
        here = ""
        if root:
            here = " [present]" if any(os.path.isfile(p) for p in f.candidate_paths(root)) else " [missing]"
        wfs = ", ".join(f"{w}" + ("*" if cat.workflows[w].slots.get(s) == f.name else "")
                        for w, s in f.workflows.items()) or "-"
        print(f"{f.name:<46} {f.role:<13} {f.variant:<22} {_size(f.size):>8}  {f.folder}/ {wfs}{here}")
    print("\n* = the file `download <workflow>` picks. Workflows:")
    for w in cat.workflows.values():
        print(f"  {w.name:<26} {w.description}")
    print(f"`download default` fetches the {cat.default!r} set.")
    return 0


def _download(cat, args) -> int:
    files = cat.resolve(args.names)
    root = comfyui_dir(args.comfyui)
    done, failed = download_files(files, root, progress=not args.no_progress)
    for r in done:
        verb = "already present" if r.status == "present" else "downloaded"
        print(f"{verb}: {r.path} ({_size(r.size)})")
    if not failed:
        return 0
    unreachable = [f for f, e in failed if e.unreachable]
    for f, e in failed:
        if not e.unreachable:
            print(f"error: {f.name}: {e}", file=sys.stderr)
    if unreachable:
        first = next(e for f, e in failed if e.unreachable)
        print(f"error: {first}; download these files by hand:", file=sys.stderr)
        for f in unreachable:
            print(f"  {file_url(f, hub_endpoint())}\n    -> {f.local_path(root)}", file=sys.stderr)
    return 1


def _verify(cat, args) -> int:
    unknown = [w for w in args.workflows if w not in cat.workflows]
    if unknown:
        print(f"error: unknown workflow {', '.join(unknown)}; known: {', '.join(cat.workflows)}", file=sys.stderr)
        return 2
    root = comfyui_dir(args.comfyui)
    if not os.path.isdir(root):
        print(f"error: no ComfyUI folder at {root} (use --comfyui DIR or set COMFYUI_PATH)", file=sys.stderr)
        return 2
    reports = verify(cat, root, workflows=args.workflows or None, checksum=args.checksum)
    wrong = False
    for rep in reports:
        print(f"{rep.workflow}: {'ready' if rep.ok else 'NOT READY'}")
        for slot, checks in rep.slots.items():
            filled = any(c.status == "ok" for c in checks)
            for c in checks:
                wrong |= c.status == "wrong"
                if c.status == "missing" and (filled or c is not checks[0]):
                    continue  # an alternative nobody needs: not worth a line
                print(f"  {slot:<13} {c.file.filename:<48} {c.message}")
    missing = not all(r.ok for r in reports)
    if missing:
        print(f"\nto fetch a workflow's files: python -m wan models download <workflow> --comfyui {root}")
    return 1 if (wrong or missing) else 0


def run(args: argparse.Namespace) -> int:
    if not args.action:
        print("usage: python -m wan models {list,download,verify} ... (see --help)", file=sys.stderr)
        return 2
    try:
        cat = load_catalog(args.catalog)
        return {"list": _list, "download": _download, "verify": _verify}[args.action](cat, args)
    except WanError as exc:
        # an unknown name is a usage error; a broken catalogue is a problem found
        print(f"error: {exc}", file=sys.stderr)
        return 2 if exc.__class__.__name__ == "WanInputError" else 1
    except KeyboardInterrupt:
        print("interrupted; a partial download is kept as <name>.part and resumed next time", file=sys.stderr)
        return 1
