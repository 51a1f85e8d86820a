"""Weight files holding NaN or Inf are refused on load, naming the file and the tensor: DiT (bf16,
fp16, fp8 and GGUF, a quantized block or a plain tensor), VAE, UMT5 (safetensors and GGUF), CLIP
vision. The GGUF check reads only each block's fp16 scales; which bytes those are is checked here
against gguf-py's own dequantizer."""

import numpy as np
import pytest
import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import GGUFReader
from gguf.quants import dequantize as gguf_dequantize
from safetensors import safe_open
from nonfinite_files import poison_gguf, poison_safetensors
from tiny_models import write_clip_vision, write_dit, write_umt5, write_umt5_gguf

from wan.errors import WanFileError
from wan.install.tiny import write_vae
from wan.job.load import load_clip_vision, load_dit, load_text_encoder, load_vae
from wan.weights.dequant import F16_FIELDS
from wan.weights.finite import tensor_problem
from wan.weights.packed import PackedTensor


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # gguf-py's NaN arithmetic, wanted here
@pytest.mark.parametrize("qtype", sorted(F16_FIELDS))
def test_scale_fields_are_where_gguf_py_reads_its_scales(qtype):
    """Random blocks whose listed fp16 fields are finite dequantize (by gguf-py) to finite values;
    one NaN or Inf in any of those fields makes gguf-py's output non-finite, and our check sees it."""
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(64, size), dtype=np.uint8)
    start, count = F16_FIELDS[qtype]
    for i in range(count):
        raw[:, start + 2 * i:start + 2 * i + 2] = np.frombuffer(np.float16(0.5).tobytes(), np.uint8)
    shape = (64 * block,)
    assert np.isfinite(gguf_dequantize(raw, GGMLQuantizationType[qtype])).all()
    assert tensor_problem(PackedTensor(torch.from_numpy(raw.copy()).reshape(-1), qtype, shape)) is None
    for i in range(count):
        for bad in (np.float16(np.nan), np.float16(np.inf)):
            poisoned = raw.copy()
            poisoned[5, start + 2 * i:start + 2 * i + 2] = np.frombuffer(bad.tobytes(), np.uint8)
            assert not np.isfinite(gguf_dequantize(poisoned, GGMLQuantizationType[qtype])).all()
            packed = PackedTensor(torch.from_numpy(poisoned).reshape(-1), qtype, shape)
            assert tensor_problem(packed) is not None


@pytest.mark.parametrize("fmt", ["safetensors", "fp16", "fp8"])
def test_dit_safetensors_with_a_nan_weight(tmp_path, fmt):
    path = write_dit(tmp_path / f"dit_{fmt}.safetensors", "t2v_1_3b", fmt)
    name = "blocks.1.self_attn.q.weight"
    poison_safetensors(path, name)
    with pytest.raises(WanFileError, match=rf"dit_{fmt}.safetensors: tensor '{name}' contains NaN"):
        load_dit(path)


@pytest.mark.parametrize("name", ["blocks.1.ffn.0.weight", "blocks.0.norm3.weight"])  # Q8_0 block; F32
def test_dit_gguf_with_a_nan_tensor(tmp_path, name):
    path = write_dit(tmp_path / "dit.gguf", "t2v_1_3b", "gguf")
    poison_gguf(path, name)
    with pytest.raises(WanFileError, match=rf"dit.gguf: tensor '{name}' contains NaN"):
        load_dit(path)


def test_dit_with_an_inf_weight(tmp_path):
    path = write_dit(tmp_path / "dit.safetensors", "t2v_1_3b", "fp16")
    poison_safetensors(path, "head.head.weight", float("-inf"))
    with pytest.raises(WanFileError, match=r"tensor 'head.head.weight' contains -Inf"):
        load_dit(path)


def test_vae_umt5_clip_vision_with_a_nan_tensor(tmp_path):
    cases = [(write_vae(tmp_path / "vae.safetensors", "2.1"), load_vae),
             (write_umt5(tmp_path / "umt5.safetensors"), load_text_encoder),
             (write_clip_vision(tmp_path / "clip.safetensors"), load_clip_vision)]
    for path, load in cases:
        with safe_open(str(path), "pt") as f:
            name = next(k for k in f.keys() if f.get_slice(k).get_dtype() in ("F32", "BF16", "F16")
                        and k.endswith("weight"))
        poison_safetensors(path, name)
        with pytest.raises(WanFileError, match=rf"{path.name}: tensor '{name}' contains NaN"):
            load(path)


def test_umt5_gguf_with_a_nan_block(tmp_path):
    path = write_umt5_gguf(tmp_path / "umt5.gguf")
    name = next(t.name for t in GGUFReader(str(path)).tensors if t.tensor_type.name not in ("F32", "F16", "BF16"))
    poison_gguf(path, name)
    with pytest.raises(WanFileError, match=rf"umt5.gguf: tensor '{name}' contains NaN"):
        load_text_encoder(path)


def test_clean_files_load(tmp_path):
    """The check refuses only broken files: the same files unpoisoned load."""
    load_dit(write_dit(tmp_path / "a.safetensors", "t2v_1_3b", "fp8"))
    load_dit(write_dit(tmp_path / "b.gguf", "t2v_1_3b", "gguf", qtype="Q4_K"))
