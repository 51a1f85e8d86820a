"""``python -m wan quantize SRC.safetensors DST.gguf --type Q8_0``: write a Wan GGUF.

The output follows ComfyUI-GGUF's conventions, so ComfyUI-GGUF and this pack both load it.
Progress goes to stderr; on any failure no file (not even a partial one) is left at DST.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ..weights.quantize import WRITABLE_TYPES, quantize_state_dict_check, write_gguf
from ..errors import WanError
from ..weights.loader import load_state_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source checkpoint (.safetensors or .gguf; fp8 files are upcast)")
    parser.add_argument("dst", help="GGUF file to write")
    parser.add_argument("--type", dest="qtype", default="Q8_0", choices=WRITABLE_TYPES,
                        help="quant type of the block weights (default Q8_0); small and sensitive "
                             "tensors stay F32/F16/BF16")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    try:
        state = load_state_dict(args.src)
        # packed inputs (fp8 or an existing GGUF) are re-quantized from their float values
        state = {k: (v.dequantize(torch.float32) if getattr(v, "is_packed", False) else v)
                 for k, v in state.items()}
        quantize_state_dict_check(args.src, state)
        start = time.monotonic()

        def progress(i: int, n: int, name: str, gtype: str) -> None:
            if not args.quiet:
                print(f"\r[{i + 1}/{n}] {gtype:5s} {name[:60]:60s}", end="", file=sys.stderr, flush=True)

        plan = write_gguf(state, args.dst, args.qtype, progress=progress)
    except (WanError, OSError) as exc:
        print(f"\nquantize: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        counts: dict[str, int] = {}
        for gtype in plan.values():
            counts[gtype] = counts.get(gtype, 0) + 1
        summary = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
        print(f"\nwrote {args.dst} ({summary}) in {time.monotonic() - start:.1f}s", file=sys.stderr)
    return 0
