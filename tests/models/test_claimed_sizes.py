"""Sizes a file claims must be backed by its tensors before a model is built, and errors name the
file and the problem without quoting its bytes (issue 23, items 4 and 6)."""

from __future__ import annotations

import os
import resource
import struct
import tracemalloc

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from tiny_models import spiece_model, write_dit, write_umt5
from wan.errors import WanFileError
from wan.job.load import load_dit, load_text_encoder
from wan.weights.gguf import read_gguf_header


def test_a_lone_far_block_is_refused_before_a_model_is_built(tmp_path):
    sd = load_file(write_dit(tmp_path / "dit.safetensors"))
    sd["blocks.99999.self_attn.q.weight"] = sd["blocks.0.self_attn.q.weight"].clone()
    save_file(sd, str(tmp_path / "far.safetensors"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(WanFileError, match=r"far.safetensors: .*blocks.99999, claims 100000 blocks"):
        load_dit(tmp_path / "far.safetensors")
    # 100,000 blocks built even on the meta device cost gigabytes
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024


def test_a_lone_far_umt5_layer_is_refused(tmp_path):
    sd = load_file(write_umt5(tmp_path / "umt5.safetensors"))
    q = next(k for k in sd if "block.0." in k and k.endswith("SelfAttention.q.weight"))
    sd[q.replace("block.0.", "block.5000.")] = sd[q].clone()
    save_file(sd, str(tmp_path / "far_umt5.safetensors"))
    with pytest.raises(WanFileError, match=r"far_umt5.safetensors: UMT5 text encoder: .*claims 5001 blocks"):
        load_text_encoder(tmp_path / "far_umt5.safetensors")


def test_umt5_with_fewer_embedding_rows_than_tokenizer_pieces_is_refused_at_load(tmp_path):
    sd = load_file(write_umt5(tmp_path / "umt5.safetensors"))
    emb = next(k for k in sd if k.endswith("shared.weight") or k.endswith("token_embedding.weight"))
    sd[emb] = sd[emb][:40].clone()  # the tiny tokenizer has 60 pieces
    for k in [k for k in sd if k.endswith("embed_tokens.weight")]:
        sd[k] = sd[emb]
    save_file(sd, str(tmp_path / "short_vocab.safetensors"))
    with pytest.raises(WanFileError, match=r"short_vocab.safetensors: .*60 pieces .*only 40 rows"):
        load_text_encoder(tmp_path / "short_vocab.safetensors")


def test_an_error_never_quotes_the_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    link = tmp_path / "model.safetensors"
    os.symlink(secret, link)
    with pytest.raises(WanFileError) as err:
        load_dit(link)
    assert "model.safetensors" in str(err.value) and "root" not in str(err.value)
    gguf_like = tmp_path / "other.gguf"
    gguf_like.write_bytes(b"GGUX" + b"root:x:0:0" * 4)
    with pytest.raises(WanFileError) as err:
        load_dit(gguf_like)
    assert "root" not in str(err.value) and "GGUX" not in str(err.value)


def _gguf_with_array(path, arch: str, key: str, items: int, itype: int = 0, itemsize: int = 1):
    """A GGUF (version 3) holding one F32 tensor and one metadata array of ``items`` zero items, laid
    out by the format's spec (gguf-py's writer handles an array item by item: minutes for 20M)."""
    def string(text):
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 2)
    head += string("general.architecture") + struct.pack("<I", 8) + string(arch)
    head += string(key) + struct.pack("<IIQ", 9, itype, items) + bytes(items * itemsize)
    head += string("head.head.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 8, 4) + struct.pack("<IQ", 0, 0)
    head += bytes(-len(head) % 32)
    path.write_bytes(head + np.ones(32, np.float32).tobytes())
    return path


def test_a_huge_metadata_array_is_not_turned_into_a_list(tmp_path):
    path = _gguf_with_array(tmp_path / "array.gguf", "wan", "general.junk", 20_000_000)
    tracemalloc.start()
    try:
        shapes, meta = read_gguf_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shapes == {"head.head.weight": ("F32", (4, 8))}
    assert peak < 20 * 1024 * 1024  # a Python list of 20M ints is ~160 MB


def test_a_tokenizer_array_past_any_vocabulary_is_refused(tmp_path):
    path = _gguf_with_array(tmp_path / "vocab.gguf", "t5encoder", "tokenizer.ggml.scores", 2_000_000, 6, 4)
    with pytest.raises(WanFileError, match=r"vocab.gguf: metadata 'tokenizer.ggml.scores' holds 2000000 items"):
        read_gguf_header(path)


def test_spiece_model_is_the_tiny_tokenizer():
    # the vocabulary-size test above relies on the tiny tokenizer's 60 pieces
    import sentencepiece

    assert sentencepiece.SentencePieceProcessor(model_proto=spiece_model()).get_piece_size() == 60
