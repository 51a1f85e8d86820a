"""Files quantized by ComfyUI 0.8.0's own code, for the comfy_quant loading tests.

``quantize_with_comfy080`` runs this file as a script in a subprocess whose path holds ComfyUI
0.8.0 and its comfy-kitchen (0.2.7; neither is importable beside 0.3.75 in the test process). The
script quantizes each planned Linear with 0.8.0's ``mixed_precision_ops`` Linear (``set_weight``,
its quantizer), writes the file from that Linear's ``state_dict`` (``.comfy_quant`` markers, scale
names) with ``comfy.utils.save_torch_file``, then reads the written file back through a fresh
0.8.0 Linear's ``_load_from_state_dict`` and writes what its ``weight.dequantize()`` gives (float32
compute dtype): the reference a loader of the same file must reproduce.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from comfy_installs import comfy_install

PREFIX = "model.diffusion_model."


def quantize_with_comfy080(src: Path, jobs: list[tuple[Path, Path, dict[str, str]]], timeout: float = 600) -> None:
    """For each ``(dst, ref, plan)`` of ``jobs`` (one ComfyUI start for all): ``src`` (plain
    safetensors, official names) -> ``dst`` (ComfyUI's file, names under PREFIX) and ``ref``
    (ComfyUI's float32 dequantization, official names); ``plan``: {layer: format}. Raises
    FileNotFoundError when ComfyUI 0.8.0 is not set up."""
    install = comfy_install("0.8.0")
    env = {**os.environ, **install.env()}
    env["PYTHONPATH"] = os.pathsep.join([str(install.site), str(install.root)])
    spec = json.dumps([[str(dst), str(ref), plan] for dst, ref, plan in jobs])
    done = subprocess.run([sys.executable, __file__, str(src), spec],
                          env=env, cwd=str(install.root), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"ComfyUI 0.8.0 quantizer failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _main(src: str, jobs: list) -> None:
    import comfy.options

    comfy.options.enable_args_parsing()
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.cli_args  # noqa: F401  (parses --cpu before model_management reads the device)
    import comfy.ops
    import torch
    from safetensors.torch import load_file

    ops = comfy.ops.mixed_precision_ops(compute_dtype=torch.float32)
    plain = load_file(src)
    for dst, ref, plan in jobs:
        _write(ops, plain, dst, ref, plan)


def _write(ops, plain: dict, dst: str, ref: str, plan: dict[str, str]) -> None:
    import comfy.utils
    from comfy.quant_ops import QUANT_ALGOS, QuantizedTensor
    from safetensors.torch import load_file, save_file

    out = {}
    for key, w in plain.items():
        layer = key[: -len(".weight")]
        fmt = plan.get(layer)
        if fmt is None:
            out[PREFIX + key] = w
            continue
        lin = ops.Linear(w.shape[1], w.shape[0], bias=False)
        lin.quant_format, lin.layout_type = fmt, QUANT_ALGOS[fmt]["comfy_tensor_layout"]
        lin.set_weight(w.float(), seed=0)  # its quantizer, scale "recalculate", no stochastic rounding
        for name, t in lin.state_dict(prefix=PREFIX + layer + ".").items():
            # a QuantizedTensor is stored as its layout serializes it (data and scales)
            out.update(t.state_dict(name) if isinstance(t, QuantizedTensor) else {name: t})
    comfy.utils.save_torch_file(out, dst)

    written = load_file(dst)
    expanded = {}
    for key, w in plain.items():
        layer = key[: -len(".weight")]
        if layer not in plan:
            expanded[key] = w
            continue
        head = PREFIX + layer + "."
        lin = ops.Linear(w.shape[1], w.shape[0], bias=False)
        own = {k[len(head):]: v for k, v in written.items() if k.startswith(head)}
        own.pop("bias", None)  # the plain bias stays with the DiT's own Linear
        lin.load_state_dict(own)
        expanded[key] = lin.weight.dequantize().float().contiguous()
    save_file(expanded, ref)


if __name__ == "__main__":
    _main(sys.argv[1], json.loads(sys.argv[2]))
