"""Tiny random model files in the real on-disk formats, for proving an install without the weights.

``write_default_set(comfyui_base)`` writes the catalogue's default workflow files (a Wan 2.1 T2V
DiT, the UMT5 text encoder, the Wan 2.1 VAE) under their catalogue names in
``<base>/models/<folder>/``, so the bundled ``t2v`` graph loads and runs them unchanged. The weights
are seeded random numbers: whatever the graph renders from them is noise.

The shapes are what detection and ComfyUI expect of a real file, only small: the DiT keeps
head_dim 128 and text_dim 4096 (official names, fp16 safetensors); the UMT5 encoder keeps
d_model 4096 (one layer, HF names) and embeds its sentencepiece model as the uint8 ``spiece_model``
tensor, as ComfyUI's repackaged file does; the VAE keeps the fixed Wan 2.1 structure at dim 8.

The writers also take the other formats users have (bf16/fp8 safetensors, GGUF DiTs, the Wan 2.2
VAE): the tests' tiny files (tests/tiny_models.py) are written by these same functions.

Because the files take the real names, never write them into a models folder that holds (or will
hold) the real weights: use a base folder of their own.
"""

from __future__ import annotations

import math
import os
import string
from pathlib import Path

import torch

from .catalog import Catalog, load_catalog
from ..models.dit.config import DIT_PRESETS, DiTConfig
from ..errors import WanFileError, WanInputError
from ..models.text.tokenizer import spiece_proto
from ..models.dit.model import WanDiT
from ..models.vae.layers import VAEConfig
from ..models.vae.wan21 import WanVAE
from ..models.vae.wan22 import WanVAE22
from ..weights.quantize import write_gguf

DIT_SIZE = dict(dim=128, ffn_dim=256, num_layers=2)
UMT5_SIZE = dict(d_model=4096, heads=2, d_kv=16, d_ff=64, layers=1, buckets=32, vocab=400)
# Written into every file's safetensors metadata so that a tiny file is recognisable as such.
MARK = {"wan_tiny": "seeded random weights for install checks; output is noise"}


def seeded(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded fp32 tensors for name -> shape, scaled so that activations stay O(1).

    Names are drawn in sorted order, so a seed gives the same values whatever order ``shapes`` has.
    """
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = torch.Size(shapes[name])
        r = torch.randn(shape, generator=g)
        if name.endswith(("modulation", "emb_pos")):
            v = 0.3 * r
        elif name.endswith("gamma") or ("norm" in name and name.endswith("weight")):
            v = 1.0 + 0.1 * r
        elif name.endswith("bias") or len(shape) < 2:
            v = 0.05 * r
        else:
            v = r / math.sqrt(shape[1:].numel())
        out[name] = v.contiguous()
    return out


def _meta_shapes(module_factory) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        template = module_factory().state_dict()
    return {k: tuple(v.shape) for k, v in template.items()}


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Writes ``tensors`` with the tiny mark in the metadata, creating the folder; atomic."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata=MARK)
    os.replace(tmp, path)  # a half-written file never sits under a name a workflow loads
    return path


# ---- DiT -----------------------------------------------------------------------------------------

DIT_FORMATS = ("bf16", "fp16", "fp32", "fp8", "gguf")


def dit_config(variant: str = "t2v_1_3b") -> DiTConfig:
    return DIT_PRESETS[variant].tiny(**DIT_SIZE)


def dit_state(variant: str = "t2v_1_3b", seed: int = 0) -> dict[str, torch.Tensor]:
    """Official-name fp32 weights of a tiny ``variant`` (a key of wan.models.dit.config.DIT_PRESETS)."""
    return seeded(_meta_shapes(lambda: WanDiT(dit_config(variant))), seed)


def write_dit(path, variant: str = "t2v_1_3b", fmt: str = "bf16", seed: int = 0, qtype: str = "Q8_0",
              prefix: str = "") -> Path:
    """fmt: "bf16", "fp16" or "fp32" safetensors; "fp8" (plain float8_e4m3fn block weights, the rest
    bf16, as wan2.1_i2v_480p_14B_fp8_e4m3fn); "gguf" (ComfyUI-GGUF layout, ``qtype``, no prefix)."""
    if fmt not in DIT_FORMATS:
        raise WanInputError(f"unknown tiny DiT format {fmt!r}; choose one of {', '.join(DIT_FORMATS)}")
    sd = dit_state(variant, seed)
    if fmt == "gguf":

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_gguf({k: v.to(torch.bfloat16) if v.ndim == 2 else v for k, v in sd.items()}, path, qtype)
        return path
    if fmt == "fp8":
        def cast(k, v):
            block_linear = k.startswith("blocks.") and k.endswith(".weight") and v.ndim == 2
            return v.to(torch.float8_e4m3fn if block_linear else torch.bfloat16)
    else:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[fmt]

        def cast(k, v):
            return v.to(dtype)
    return save_safetensors({prefix + k: cast(k, v) for k, v in sd.items()}, path)


# ---- UMT5 text encoder ---------------------------------------------------------------------------

def spiece_model() -> bytes:
    """A small unigram sentencepiece model with UMT5's special ids (pad 0, eos 1, unk 2, no bos).

    Written directly as a ModelProto (no training): single characters, with and without the
    word-start mark, so every lower-case ASCII prompt encodes without unknown pieces.
    """
    chars = string.ascii_lowercase + string.digits + ",.'!?-"
    pieces = ["<pad>", "</s>", "<unk>", "\u2581"]
    pieces += ["\u2581" + c for c in chars] + list(chars) + list(string.ascii_uppercase)
    types = [3, 3, 2] + [1] * (len(pieces) - 3)
    scores = [0.0, 0.0, 0.0] + [-1.0 - 0.01 * i for i in range(len(pieces) - 3)]
    return spiece_proto(pieces, scores, types)


def umt5_state(seed: int = 5, **size: int) -> dict[str, torch.Tensor]:
    """HF UMT5EncoderModel names (as ComfyUI's umt5_xxl files), every block with its own position
    bias. ``size`` overrides entries of UMT5_SIZE."""
    s = {**UMT5_SIZE, **size}
    d, inner = s["d_model"], s["heads"] * s["d_kv"]
    shapes = {"shared.weight": (s["vocab"], d), "encoder.final_layer_norm.weight": (d,)}
    for i in range(s["layers"]):
        p = f"encoder.block.{i}.layer."
        shapes.update({
            p + "0.SelfAttention.q.weight": (inner, d), p + "0.SelfAttention.k.weight": (inner, d),
            p + "0.SelfAttention.v.weight": (inner, d), p + "0.SelfAttention.o.weight": (d, inner),
            p + "0.SelfAttention.relative_attention_bias.weight": (s["buckets"], s["heads"]),
            p + "0.layer_norm.weight": (d,),
            p + "1.DenseReluDense.wi_0.weight": (s["d_ff"], d), p + "1.DenseReluDense.wi_1.weight": (s["d_ff"], d),
            p + "1.DenseReluDense.wo.weight": (d, s["d_ff"]), p + "1.layer_norm.weight": (d,),
        })
    sd = seeded(shapes, seed)
    sd["shared.weight"] = sd["shared.weight"] * 8.0  # T5 embeddings are O(1) per entry
    return sd


def write_umt5(path, seed: int = 5, spiece: bytes | None = None) -> Path:
    """bf16 UMT5 weights with ``spiece`` (default: spiece_model()) embedded as ``spiece_model``."""
    sd = {k: v.to(torch.bfloat16) for k, v in umt5_state(seed).items()}
    sd["spiece_model"] = torch.frombuffer(bytearray(spiece or spiece_model()), dtype=torch.uint8)
    return save_safetensors(sd, path)


# ---- VAE -----------------------------------------------------------------------------------------

def vae_state(version: str = "2.1", seed: int = 3) -> dict[str, torch.Tensor]:
    """Wan 2.1 (ComfyUI's fixed structure at dim 8) or Wan 2.2 (dim 8, decoder dim 16) VAE weights."""
    if version == "2.1":
        cls, cfg = WanVAE, VAEConfig(dim=8, z_dim=16)
    elif version == "2.2":
        cls, cfg = WanVAE22, VAEConfig(dim=8, dec_dim=16, z_dim=48)
    else:
        raise WanInputError(f"unknown tiny VAE version {version!r}; choose 2.1 or 2.2")
    return seeded(_meta_shapes(lambda: cls(cfg)), seed)


def write_vae(path, version: str = "2.1", seed: int = 3) -> Path:
    return save_safetensors({k: v.to(torch.bfloat16) for k, v in vae_state(version, seed).items()}, path)


# ---- the default set -----------------------------------------------------------------------------

_WRITERS = {
    # (role, variant) of a catalogued file -> writer
    ("dit", "t2v_1_3b"): lambda p: write_dit(p, "t2v_1_3b", "fp16"),
    ("dit", "wan22_animate_14b"): lambda p: write_dit(p, "wan22_animate_14b", "bf16"),
    ("text_encoder", "umt5_xxl"): write_umt5,
    ("vae", "wan21"): write_vae,
}


def is_tiny(path: str | os.PathLike) -> bool:
    """Whether a safetensors file was written here (carries the ``wan_tiny`` metadata mark)."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), "pt") as fh:
            return "wan_tiny" in (fh.metadata() or {})
    except Exception:  # noqa: BLE001 - unreadable or not safetensors: not ours
        return False


def write_default_set(comfyui_base: str | os.PathLike, workflow: str | None = None,
                      catalog: Catalog | None = None) -> dict[str, Path]:
    """Write tiny files for every slot of ``workflow`` (the catalogue default) under
    ``<comfyui_base>/models/<folder>/<filename>``; returns slot -> path.

    A file already there is kept only if it is a tiny file itself; a real file under that name is
    refused (WanFileError) rather than overwritten.
    """
    catalog = catalog or load_catalog()
    workflow = workflow or catalog.default
    out: dict[str, Path] = {}
    for slot, name in catalog.workflows[workflow].slots.items():
        f = catalog.file(name)
        writer = _WRITERS.get((f.role, f.variant))
        if writer is None:
            raise WanInputError(f"no tiny writer for the {f.role} {f.variant} ({f.filename}) of workflow {workflow!r}")
        path = Path(f.local_path(comfyui_base))
        if path.exists():
            if not is_tiny(path):
                raise WanFileError(path, "exists and is not a tiny file: refusing to overwrite real weights (use "
                                   "another base folder for the tiny set)")
        else:
            writer(path)
        out[slot] = path
    return out


__all__ = ["DIT_SIZE", "UMT5_SIZE", "MARK", "DIT_FORMATS", "seeded", "save_safetensors", "dit_config", "dit_state",
           "write_dit", "spiece_model", "umt5_state", "write_umt5", "vae_state", "write_vae", "is_tiny",
           "write_default_set"]
