"""UMT5 text encoders in GGUF (llama.cpp "t5"/"t5encoder" files, as used with ComfyUI-GGUF).

Tensor names are llama.cpp's (``enc.blk.N.attn_q``, ``token_embd``, ...) and are mapped to the
HF/ComfyUI names (``encoder.block.N.layer.0.SelfAttention.q``, ``shared``, ...). The
sentencepiece tokenizer is not stored as a file but as metadata (pieces, scores, types, special
ids, normalizer charsmap); it is rebuilt here as a serialized sentencepiece ModelProto, encoded by
hand so no protobuf package is needed.
"""

from __future__ import annotations

import os
import struct

import torch

from ..errors import WanFileError
from .finite import check_finite_weights
from .gguf import read_gguf

# llama.cpp -> HF T5 names, applied as substring replacements in this order (as ComfyUI-GGUF does)
T5_NAME_MAP = (
    ("enc.", "encoder."),
    (".blk.", ".block."),
    ("token_embd", "shared"),
    ("output_norm", "final_layer_norm"),
    ("attn_q", "layer.0.SelfAttention.q"),
    ("attn_k", "layer.0.SelfAttention.k"),
    ("attn_v", "layer.0.SelfAttention.v"),
    ("attn_o", "layer.0.SelfAttention.o"),
    ("attn_norm", "layer.0.layer_norm"),
    ("attn_rel_b", "layer.0.SelfAttention.relative_attention_bias"),
    ("ffn_up", "layer.1.DenseReluDense.wi_1"),
    ("ffn_down", "layer.1.DenseReluDense.wo"),
    ("ffn_gate", "layer.1.DenseReluDense.wi_0"),
    ("ffn_norm", "layer.1.layer_norm"),
)
T5_ARCHITECTURES = ("t5", "t5encoder")


def hf_name(name: str) -> str:
    for old, new in T5_NAME_MAP:
        name = name.replace(old, new)
    return name


def gguf_text_encoder_state_dict(path: str | os.PathLike, dtype: torch.dtype = torch.bfloat16,
                                 keep_packed: bool = False) -> tuple[dict, bytes]:
    """(state dict in HF/ComfyUI UMT5 names, serialized sentencepiece model) of a UMT5 GGUF.

    Quantized tensors are dequantized to ``dtype`` unless ``keep_packed`` (then the Linear weights
    stay ``PackedTensor`` for ``attach_packed``; the token embedding is always dequantized, it is
    not a Linear). The state dict also carries the tokenizer as a uint8 ``spiece_model`` tensor,
    like ComfyUI's repackaged safetensors files.
    """
    path = os.fspath(path)
    state, meta = read_gguf(path, architectures=T5_ARCHITECTURES)
    check_finite_weights(state, path)
    out: dict = {}
    for name, value in state.items():
        key = hf_name(name)
        if getattr(value, "is_packed", False) and (not keep_packed or key == "shared.weight"):
            value = value.dequantize(dtype)
        out[key] = value
    spm = sentencepiece_from_metadata(path, meta)
    out["spiece_model"] = torch.frombuffer(bytearray(spm), dtype=torch.uint8)
    return out, spm


# -- sentencepiece ModelProto, hand-encoded ------------------------------------------------------

def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # protobuf encodes negative int32 as 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_varint(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(int(value))


def _field_bytes(num: int, data: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _field_float(num: int, value: float) -> bytes:
    return _varint(num << 3 | 5) + struct.pack("<f", value)


def sentencepiece_from_metadata(path, meta: dict) -> bytes:
    """A serialized sentencepiece unigram ModelProto from ``tokenizer.ggml.*`` metadata."""
    model = meta.get("tokenizer.ggml.model")
    if model != "t5":
        raise WanFileError(path, f"tokenizer.ggml.model is {model!r}, expected 't5' (a UMT5 sentencepiece "
                           "tokenizer); use a text-encoder GGUF converted with its tokenizer")
    tokens = meta.get("tokenizer.ggml.tokens")
    scores = meta.get("tokenizer.ggml.scores")
    types = meta.get("tokenizer.ggml.token_type")
    if not isinstance(tokens, list) or not tokens:
        raise WanFileError(path, "tokenizer.ggml.tokens is missing: the tokenizer cannot be rebuilt")
    scores = scores if isinstance(scores, list) else [0.0] * len(tokens)
    types = types if isinstance(types, list) else [1] * len(tokens)
    if not (len(tokens) == len(scores) == len(types)):
        raise WanFileError(path, f"tokenizer metadata disagrees: {len(tokens)} tokens, {len(scores)} "
                           f"scores, {len(types)} types")

    def special(key: str, default: int) -> int:
        v = meta.get(f"tokenizer.ggml.{key}_token_id", default)
        return int(v) if isinstance(v, int) and -1 <= v < len(tokens) else default

    unk, bos, eos, pad = special("unknown", 2), special("bos", -1), special("eos", 1), special("padding", 0)
    out = bytearray()
    for piece, score, ptype in zip(tokens, scores, types):
        p = _field_bytes(1, str(piece).encode("utf-8")) + _field_float(2, float(score))
        if ptype != 1:  # NORMAL is the default; gguf and sentencepiece number the types alike
            p += _field_varint(3, int(ptype))
        out += _field_bytes(1, p)
    trainer = (_field_varint(3, 1) + _field_varint(4, len(tokens))
               + _field_varint(35, int(any(t == 6 for t in types)))
               + _field_varint(40, unk) + _field_varint(41, bos) + _field_varint(42, eos)
               + _field_varint(43, pad))
    for num, idx in ((45, unk), (46, bos), (47, eos), (48, pad)):
        if idx >= 0:
            trainer += _field_bytes(num, str(tokens[idx]).encode("utf-8"))
    out += _field_bytes(2, trainer)
    charsmap = meta.get("tokenizer.ggml.precompiled_charsmap")
    normalizer = _field_bytes(1, b"nmt_nfkc" if charsmap else b"identity")
    if charsmap:
        normalizer += _field_bytes(2, bytes(charsmap))
    normalizer += _field_varint(3, int(bool(meta.get("tokenizer.ggml.add_space_prefix", True))))
    normalizer += _field_varint(4, int(bool(meta.get("tokenizer.ggml.remove_extra_whitespaces", True))))
    normalizer += _field_varint(5, 1)
    out += _field_bytes(3, normalizer)
    return bytes(out)
