"""The one loading path: a weights file and a ``LoadOptions`` in, a ready model out.

The nodes, the pipelines (``load_components``), the CLI and the benches all load through these
functions, so every option reaches every caller the same way. A file's format is read from its
content (``weights.loader``), never from its name. The DiT takes every option; the text encoder,
the VAE and CLIP vision read only ``dtype`` and ``device``.

    dit = load_dit("wan2.1_t2v_1.3B.gguf", LoadOptions(device="cuda", attention="int8"))
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import torch

from ..errors import WanFileError
from ..models.clip_vision import CLIPVisionH
from ..models.clip_vision import load_clip_vision as _clip_from_state_dict
from ..models.dit.config import DiTConfig
from ..models.dit.loading import checked_state_dict
from ..models.dit.loading import load_dit as _dit_from_state_dict
from ..models.dit.model import WanDiT
from ..models.dit.shapes import config_from_shapes
from ..models.identify import identify, identify_file
from ..models.text.encoder import TextEncoder
from ..models.text.tokenizer import find_spiece_model
from ..models.text.umt5 import checked_umt5_state_dict, convert_wan_to_hf, hf_t5_config
from ..models.vae.loading import load_vae as _vae_from_state_dict
from ..runtime.blockswap import apply_block_swap
from ..runtime.compile import compile_blocks
from ..runtime.dequant_cache import enable_dequant_cache
from ..runtime.fp16_accumulation import enable_fp16_accumulation
from ..runtime.fp8_matmul import enable_fp8_fast
from ..weights.fp8 import quantize_fp8
from ..weights.gguf_text import gguf_text_encoder_state_dict
from ..weights.loader import load_state_dict, read_header, sniff
from ..weights.names import dit_to_official
from ..weights.packed import is_packed
from .memory import place_auto
from .options import LoadOptions

log = logging.getLogger(__name__)

__all__ = ["LoadOptions", "TextEncoderWeights", "build_dit", "dit_weights", "load_clip_vision", "load_dit",
           "load_text_encoder", "load_vae", "text_encoder_weights"]

# dtypes a file's plain tensors may be held in as they are (an fp8 norm is upcast, not kept)
PLAIN_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# the UMT5 weights another stack holds as Linear layers (official names): the only ones left packed
_UMT5_LINEAR = re.compile(r"^blocks\.\d+\.(attn\.[qkvo]|ffn\.(gate\.0|fc1|fc2))\.weight$")


def dit_header(path: str | os.PathLike) -> tuple[DiTConfig, dict[str, tuple[int, ...]]]:
    """(config, {official tensor name: shape}) of a DiT file from its header alone, after checking
    it is a Wan DiT: what a loader refuses a wrong file or another model's LoRA with before any
    weight is read."""
    shapes, metadata = read_header(path)
    who = identify(shapes, metadata)
    if who.role != "dit":
        raise WanFileError(path, f"not a Wan diffusion model: it looks like {who.detail}")
    return config_from_shapes(shapes, path), dit_to_official(shapes)


def dit_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """{official tensor name: shape} of a DiT file, read from its header alone: what a LoRA can be
    matched against before the model is loaded."""
    shapes, _ = read_header(path)
    return dit_to_official(shapes)


def load_dit(path: str | os.PathLike, options: LoadOptions = LoadOptions()) -> WanDiT:
    """The Wan DiT of a GGUF or safetensors file (any variant, layout and prefix), with ``options``."""
    path = os.fspath(path)
    gguf = sniff(path) == "gguf"
    if gguf and options.quantization != "disabled":
        log.info("Wan: %s is GGUF; quantization=%s keeps the file's own format", os.path.basename(path),
                 options.quantization)
    return build_dit(load_state_dict(path), options, path=path, keep_format=gguf)


def dit_weights(path: str | os.PathLike, quantization: str = "disabled") -> tuple[DiTConfig, dict]:
    """(config, {official name: tensor}) of a DiT file, checked as ``load_dit`` checks it, packed
    tensors (GGUF, fp8) left packed: what another stack's model (ComfyUI's) is built from.
    ``quantization`` other than "disabled" stores a safetensors file's block weights as fp8."""
    path = os.fspath(path)
    state_dict = load_state_dict(path)
    if quantization != "disabled" and sniff(path) != "gguf":
        state_dict = quantize_fp8(state_dict, "fp8_e4m3fn")
    return checked_state_dict(state_dict, path)


def build_dit(state_dict: dict, options: LoadOptions = LoadOptions(), path: str | os.PathLike | None = None,
              keep_format: bool = False) -> WanDiT:
    """``load_dit`` for tensors already in memory (benches, tests); ``path`` only names them in errors.

    ``keep_format``: the tensors are a GGUF file's, whose quantization stays as it is (fp8 on load
    is skipped). Order matters: fp8 weights are made before the model is built, the attention kernel
    and the fp8 layers are chosen before compiling (compiled code captures them), block swap
    places the tensors before that, and the dequantization cache keeps what block swap left resident.
    """
    if options.quantization != "disabled" and not keep_format:
        state_dict = quantize_fp8(state_dict, "fp8_e4m3fn")  # weights already fp8 stay as they are
    device = options.compute_device
    dit = _dit_from_state_dict(state_dict, path=path, dtype=options.dtype, device=options.build_device)
    dit.set_attention(options.attention, device)
    if options.quantization == "fp8_e4m3fn_fast":
        enable_fp8_fast(dit, device)
    if options.fp16_accumulation:
        enable_fp16_accumulation(dit, options.dtype)
    if options.block_swap is not None and options.block_swap.auto:
        place_auto(dit, options.block_swap, device, options.offload_device)
    elif options.swaps:
        apply_block_swap(dit, options.block_swap, device, options.offload_device)
    else:
        dit.to(device)
    enable_dequant_cache(dit, options.dequant_cache, options.dtype, device)
    compile_blocks(dit, options.compile)
    return dit


def load_text_encoder(path: str | os.PathLike, options: LoadOptions = LoadOptions()) -> TextEncoder:
    """The UMT5 text encoder and its tokenizer: safetensors (fp8 scaled included) or a llama.cpp GGUF."""
    path = os.fspath(path)
    if sniff(path) == "gguf":
        state_dict, _ = gguf_text_encoder_state_dict(path, dtype=options.dtype)
    else:
        # fp8 weights, scaled or not, stay tensors: the encoder upcasts them itself on load
        state_dict = load_state_dict(path, pack_fp8=False)
    return TextEncoder.from_state_dict(state_dict, path=path, dtype=options.dtype, device=options.compute_device)


@dataclass(frozen=True)
class TextEncoderWeights:
    """A UMT5 file read and checked for another stack's T5 (ComfyUI's): ``state_dict`` in HF names
    with the Linear weights left packed where the file packs them, ``config`` the HF T5 entries its
    shapes decide, ``spiece`` its serialized sentencepiece model, ``dtype`` the dtype to hold its
    plain tensors in."""

    config: dict
    state_dict: dict
    spiece: bytes
    dtype: torch.dtype


def text_encoder_weights(path: str | os.PathLike, dtype: torch.dtype | None = None,
                         default_dtype: torch.dtype = torch.float16) -> TextEncoderWeights:
    """The UMT5 of a safetensors (plain, fp8, scaled fp8) or llama.cpp GGUF file, checked as
    ``load_text_encoder`` checks it; a file of another model fails here, naming it, from its header.

    ``dtype`` None keeps a safetensors file's own dtype (its final norm's, as ComfyUI decides);
    ``default_dtype`` serves where the file does not say (GGUF: llama.cpp writes every norm in F32
    whatever the model's dtype). Packed tensors that no Linear takes (the token embedding) are
    expanded to that dtype.
    """
    path = os.fspath(path)
    who = identify_file(path)
    if who.role != "text_encoder":
        raise WanFileError(path, f"not a UMT5 text encoder: it looks like {who.detail}")
    gguf = sniff(path) == "gguf"
    if gguf:
        state_dict, _ = gguf_text_encoder_state_dict(path, dtype=dtype or default_dtype, keep_packed=True)
    else:
        state_dict = load_state_dict(path, architectures=())  # fp8 stays packed, scales folded in
    spiece = find_spiece_model(state_dict, path)
    cfg, official = checked_umt5_state_dict(state_dict, path)
    stored = None if gguf else official["norm.weight"].dtype
    dtype = dtype or (stored if stored in PLAIN_DTYPES else default_dtype)
    official = {k: (v.dequantize(dtype) if is_packed(v) and not _UMT5_LINEAR.match(k) else v)
                for k, v in official.items()}
    return TextEncoderWeights(hf_t5_config(cfg, path), convert_wan_to_hf(official), spiece, dtype)


def load_vae(path: str | os.PathLike, options: LoadOptions = LoadOptions()):
    """The Wan 2.1 or 2.2 VAE of a safetensors file (official/ComfyUI or diffusers layout)."""
    path = os.fspath(path)
    state_dict = load_state_dict(path, architectures=())
    return _vae_from_state_dict(state_dict, path=path, dtype=options.dtype, device=options.compute_device)


def load_clip_vision(path: str | os.PathLike, options: LoadOptions = LoadOptions()) -> CLIPVisionH:
    """The CLIP ViT-H/14 vision encoder of a safetensors file (HF/ComfyUI layout)."""
    path = os.fspath(path)
    state_dict = load_state_dict(path, architectures=())
    return _clip_from_state_dict(state_dict, path=path, dtype=options.dtype, device=options.compute_device)

