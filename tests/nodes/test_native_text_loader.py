"""The CLIP loader's seam, in-process on ComfyUI 0.3.75 (CPU): a UMT5 file in any format we read
becomes ComfyUI's own CLIP (type "wan").

The reference is ComfyUI's own path for type "wan" (``comfy.sd.load_text_encoder_state_dicts``: the
file's tensors as ``comfy.utils.load_torch_file`` reads them, ComfyUI's ``t5_xxl_detect`` for the
dtype and scaled fp8, WanT5Tokenizer on the file's ``spiece_model``), told the tiny T5's sizes through
ComfyUI's ``umt5xxl_model_config`` option, as the test server's WanTestTinyUMT5Loader does (its fixed
umt5_config_xxl.json describes a 5.7B-parameter model no test can write). A GGUF is compared with
that path on a safetensors of the weights gguf-py dequantizes from it.
"""

from __future__ import annotations

import json
import shutil

import gguf
import pytest
import torch
from refs import comfy, comfyui_dir, pack_module
from safetensors.torch import save_file
from tiny_models import (spiece_model, umt5_state, write_dit, write_lora, write_umt5_gguf, write_vae)
from transformers import UMT5Config, UMT5EncoderModel

from wan.install.tiny import UMT5_SIZE
from wan.models.text.tokenizer import WanTokenizer
from wan.models.text.umt5 import checked_umt5_state_dict, hf_t5_config

TOLERANCE = 1e-5  # relative to max|reference|: the same fp32 math on the same weight values
LAYERS = 2  # more than one block: UMT5's per-block position tables are told apart from T5 v1.1's
PROMPTS = ["a sword in burning wood", "portrait man smile, waving hat",
           "red house on a green hill under blue sky clouds " * 3, ""]
# ComfyUI's tokenizer does no whitespace cleaning, so these compare raw ids, unicode included
TOKEN_PROMPTS = PROMPTS + ["über naïve café 日本語 🎉🚀 ｆｕｌｌ ①②", "  runs   of\twhitespace \n here  ",
                           "emoji 👩‍👩‍👧 and flags 🇯🇵, smoke rising"]
LINEARS = ("SelfAttention.q", "SelfAttention.k", "SelfAttention.v", "SelfAttention.o",
           "DenseReluDense.wi_0", "DenseReluDense.wi_1", "DenseReluDense.wo")


def _t5_config(layers: int) -> dict:
    """The tiny writer's sizes in HF T5 terms (from wan.install.tiny's table, not from the loader)."""
    s = UMT5_SIZE
    return {"d_model": s["d_model"], "num_heads": s["heads"], "d_kv": s["d_kv"], "d_ff": s["d_ff"],
            "num_layers": layers, "vocab_size": s["vocab"], "relative_attention_num_buckets": s["buckets"]}


def _spiece_tensor() -> torch.Tensor:
    return torch.frombuffer(bytearray(spiece_model()), dtype=torch.uint8)


def _is_linear(key: str) -> bool:
    return key.endswith(".weight") and any(f".{n}." in key for n in LINEARS)


def _scaled_fp8(sd: dict, scaled: bool) -> dict:
    """Linear weights as fp8 e4m3fn, one float32 scale each (Comfy-Org's umt5_xxl_fp8_e4m3fn_scaled
    layout: a ``scaled_fp8`` marker and ``<module>.scale_weight``), or plain fp8 without scales."""
    out = {}
    for k, v in sd.items():
        if not _is_linear(k):
            out[k] = v
            continue
        scale = v.abs().max() / 448.0 if scaled else torch.tensor(1.0)
        out[k] = (v / scale).to(torch.float8_e4m3fn)
        if scaled:
            out[k[: -len("weight")] + "scale_weight"] = scale.float().reshape(())
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def _dequantized_by_gguf_py(path) -> dict:
    names = {"token_embd": "shared", "enc.output_norm": "encoder.final_layer_norm", "enc.blk.": "encoder.block.",
             "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias", "attn_q": "layer.0.SelfAttention.q",
             "attn_k": "layer.0.SelfAttention.k", "attn_v": "layer.0.SelfAttention.v",
             "attn_o": "layer.0.SelfAttention.o", "attn_norm": "layer.0.layer_norm",
             "ffn_gate": "layer.1.DenseReluDense.wi_0", "ffn_up": "layer.1.DenseReluDense.wi_1",
             "ffn_down": "layer.1.DenseReluDense.wo", "ffn_norm": "layer.1.layer_norm"}
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        name = t.name
        for cpp, hf in names.items():
            name = name.replace(cpp, hf)
        shape = tuple(int(v) for v in reversed(t.shape))
        out[name] = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float().reshape(shape)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("native_text")
    plain = {k: v.float() for k, v in umt5_state(5, layers=LAYERS).items()}
    out = {}
    for name, sd in (("plain", plain), ("fp8_scaled", _scaled_fp8(plain, True)), ("fp8", _scaled_fp8(plain, False))):
        out[name] = d / f"umt5_{name}.safetensors"
        save_file({**sd, "spiece_model": _spiece_tensor()}, str(out[name]))
    out["gguf"] = write_umt5_gguf(d / "umt5-xxl-encoder-Q8_0.gguf")
    out["gguf_dense"] = d / "umt5_gguf_dequantized_f32.safetensors"
    save_file({**_dequantized_by_gguf_py(out["gguf"]), "spiece_model": _spiece_tensor()}, str(out["gguf_dense"]))
    return out


@pytest.fixture(scope="module")
def seam():
    return pack_module("nodes._comfy_text")


def _comfyui_clip(path, layers: int):
    """ComfyUI's load_text_encoder_state_dicts for CLIPType.WAN, the T5 sizes given."""
    sd_mod, utils = comfy("comfy.sd"), comfy("comfy.utils")
    wan_te, sd3 = comfy("comfy.text_encoders.wan"), comfy("comfy.text_encoders.sd3_clip")
    sd = utils.load_torch_file(str(path), safe_load=True)
    target = comfy("comfy.supported_models_base").ClipTarget(wan_te.WanT5Tokenizer, wan_te.te(**sd3.t5_xxl_detect(sd)))
    clip = sd_mod.CLIP(target, tokenizer_data={"spiece_model": sd.get("spiece_model")},
                       parameters=utils.calculate_parameters(sd), model_options={"umt5xxl_model_config": _t5_config(layers)})
    missing, _ = clip.load_sd(sd)
    assert not missing
    return clip


def _encode(clip, prompt):
    """What CLIPTextEncode returns: [[cond, {pooled_output, ...}]]."""
    return clip.encode_from_tokens_scheduled(clip.tokenize(prompt))


def _close(a, b):
    err = (a - b).abs().max().item() / b.abs().max().item()
    print(f"max|ours - reference| / max|reference| = {err:.2e}")
    assert err < TOLERANCE, err


def _same_conditioning(ours, ref):
    for prompt in PROMPTS:
        (c, extra), = _encode(ours, prompt)
        (rc, rextra), = _encode(ref, prompt)
        assert c.shape == rc.shape and c.dtype == rc.dtype
        _close(c, rc)
        assert extra.keys() == rextra.keys()
        for k, v in rextra.items():
            if isinstance(v, torch.Tensor):
                _close(extra[k].float(), v.float())
            else:
                assert extra[k] == v, k


def _packed(clip) -> dict:
    return {n: m.weight for n, m in clip.cond_stage_model.named_modules() if getattr(m, "packed", None)}


def _t5(clip):
    return clip.cond_stage_model.umt5xxl.transformer


def test_safetensors_clip_is_comfyuis_and_encodes_as_comfyui(files, seam):
    mm = comfy("comfy.model_management")
    ours = seam.load_text_encoder(files["plain"])
    ref = _comfyui_clip(files["plain"], LAYERS)
    assert isinstance(ours, comfy("comfy.sd").CLIP)
    assert type(_t5(ours)) is comfy("comfy.text_encoders.t5").T5
    assert type(ours.tokenizer) is comfy("comfy.text_encoders.wan").WanT5Tokenizer
    assert _t5(ours).shared.weight.dtype == torch.float32  # the file's own dtype, as ComfyUI chooses
    assert not _packed(ours)  # a plain file has nothing to keep packed
    _same_conditioning(ours, ref)
    # ComfyUI's model management holds our patcher, and no stale one of the same model
    holders = [m for m in mm.loaded_models() if m.model is ours.patcher.model]
    assert len(holders) == 1 and holders[0] is ours.patcher


def test_gguf_clip_equals_comfyui_on_dequantized_weights(files, seam):
    ours = seam.load_text_encoder(files["gguf"], dtype=torch.float32)
    ref = _comfyui_clip(files["gguf_dense"], 1)
    packed = _packed(ours)
    assert packed and all(w.dtype == torch.uint8 for w in packed.values())
    # every Linear of the tiny GGUF is Q8_0 (its writer quantizes them all)
    assert len(packed) == len(LINEARS)
    assert ours.patcher.model_size() < ref.patcher.model_size()
    _same_conditioning(ours, ref)
    assert all(w.dtype == torch.uint8 for w in _packed(ours).values())  # still packed after encoding


@pytest.mark.parametrize("kind", ["fp8_scaled", "fp8"])
def test_fp8_clip_equals_comfyuis_own_handling_of_the_file(files, seam, kind):
    ours = seam.load_text_encoder(files[kind])
    ref = _comfyui_clip(files[kind], LAYERS)
    packed = _packed(ours)
    assert len(packed) == LAYERS * len(LINEARS) and all(w.dtype == torch.uint8 for w in packed.values())
    _same_conditioning(ours, ref)


@pytest.mark.parametrize("kind", ["plain", "gguf"])
def test_token_ids_are_comfyuis_on_the_files_sentencepiece_model(files, seam, kind):
    """A GGUF carries its tokenizer as metadata: the sentencepiece model rebuilt from it must give
    ComfyUI's tokenizer the ids the original model gives."""
    ours = seam.load_text_encoder(files[kind], dtype=torch.float32)
    ref = comfy("comfy.text_encoders.wan").WanT5Tokenizer(tokenizer_data={"spiece_model": _spiece_tensor()})
    wan_tok = WanTokenizer.from_spiece_bytes(spiece_model())
    for prompt in TOKEN_PROMPTS:
        ids = ours.tokenize(prompt)
        assert ids == ref.tokenize_with_weights(prompt), prompt
        row = [t for t, _ in ids["umt5xxl"][0]]
        assert len(row) == 512 and set(row[len(wan_tok.encode(prompt)):]) <= {0}
        if prompt == " ".join(prompt.split()):  # our tokenizer also collapses whitespace runs
            assert row[: len(wan_tok.encode(prompt))] == wan_tok.encode(prompt), prompt


def test_comfyui_lora_patches_packed_clip_weights_without_unpacking(files, seam):
    sd_mod = comfy("comfy.sd")
    g = torch.Generator().manual_seed(21)
    dense = _dequantized_by_gguf_py(files["gguf"])
    lora = {}  # ComfyUI's generic "text_encoders.<module>" LoRA names, which its LoraLoader maps
    for n in ("layer.0.SelfAttention.q", "layer.1.DenseReluDense.wo"):
        key = f"text_encoders.umt5xxl.transformer.encoder.block.0.{n}"
        out_f, in_f = dense[f"encoder.block.0.{n}.weight"].shape
        lora[key + ".lora_up.weight"] = torch.randn(out_f, 4, generator=g) * 0.3
        lora[key + ".lora_down.weight"] = torch.randn(4, in_f, generator=g) * 0.3
    base = seam.load_text_encoder(files["gguf"], dtype=torch.float32)
    ref_base = _comfyui_clip(files["gguf_dense"], 1)
    _, ours = sd_mod.load_lora_for_models(None, base, lora, 0.0, 0.8)
    _, ref = sd_mod.load_lora_for_models(None, ref_base, lora, 0.0, 0.8)
    assert type(ours.patcher) is type(base.patcher) and len(ours.patcher.patches) == len(ref.patcher.patches) == 2
    prompt = PROMPTS[1]
    plain, with_lora = _encode(ref_base, prompt)[0][0], _encode(ref, prompt)[0][0]
    assert (with_lora - plain).abs().max() > 1e-3 * plain.abs().max()  # the LoRA changes the output
    _close(_encode(ours, prompt)[0][0], with_lora)
    assert all(w.dtype == torch.uint8 for w in _packed(ours).values())
    _close(_encode(base, prompt)[0][0], plain)  # the base CLIP (same ComfyUI model) is untouched


def _clip_l(path):
    g = torch.Generator().manual_seed(2)
    sd = {"text_model.embeddings.token_embedding.weight": torch.randn(100, 32, generator=g),
          "text_model.embeddings.position_embedding.weight": torch.randn(77, 32, generator=g),
          "text_model.encoder.layers.0.self_attn.q_proj.weight": torch.randn(32, 32, generator=g),
          "text_model.final_layer_norm.weight": torch.ones(32)}
    save_file(sd, str(path))
    return path


def _t5_v11(path):
    sd = {k: v for k, v in umt5_state(5, layers=2).items()
          if not k.startswith("encoder.block.1.layer.0.SelfAttention.relative_attention_bias")}
    save_file({**sd, "spiece_model": _spiece_tensor()}, str(path))
    return path


def _truncated(path, files):
    data = files["plain"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make", [
    lambda p, f: write_dit(p / "dit.safetensors", "t2v_1_3b", "safetensors"),
    lambda p, f: write_dit(p / "dit.gguf", "t2v_1_3b", "gguf"),
    lambda p, f: write_vae(p / "vae.safetensors"),
    lambda p, f: write_lora(p / "lora.safetensors", variant="t2v_1_3b"),
    lambda p, f: _clip_l(p / "clip_l.safetensors"),
    lambda p, f: _t5_v11(p / "t5xxl.safetensors"),
    lambda p, f: _truncated(p / "umt5_truncated.safetensors", f),
], ids=["dit", "dit_gguf", "vae", "lora", "clip_l", "t5_v1_1", "truncated"])
def test_bad_files_fail_naming_the_file_before_comfyui_builds_anything(files, seam, tmp_path, monkeypatch, make):
    path = make(tmp_path, files)
    built = []
    for module in ("comfy.sd", "comfy.text_encoders.wan"):
        cls = "CLIP" if module == "comfy.sd" else "te"
        monkeypatch.setattr(comfy(module), cls, lambda *a, **k: built.append(module))
    with pytest.raises(pack_module("wan.errors").WanFileError) as err:
        seam.load_text_encoder(path)
    assert err.value.path == str(path) and path.name in str(err.value)
    assert not built


def test_a_full_size_file_gives_comfyuis_umt5_config_xxl(tmp_path):
    """google/umt5-xxl's encoder, built by transformers on the meta device (no memory): the T5 sizes
    read from its shapes are exactly those of ComfyUI's umt5_config_xxl.json."""
    cfg = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     relative_attention_num_buckets=32, feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        shapes = UMT5EncoderModel(cfg).state_dict()
    ours = hf_t5_config(checked_umt5_state_dict(shapes)[0])
    with open(comfyui_dir() / "comfy" / "text_encoders" / "umt5_config_xxl.json") as f:
        reference = json.load(f)
    assert {**reference, **ours} == reference and set(ours) <= set(reference)


def test_loader_node_returns_our_clip(files, monkeypatch, tmp_path):
    native = pack_module("nodes.native_loaders")
    target = tmp_path / "umt5-xxl-encoder-Q8_0.gguf"
    shutil.copy(files["gguf"], target)
    monkeypatch.setattr(native, "full_path", lambda name, *folders: str(tmp_path / name))
    assert native.NODE_DISPLAY_NAME_MAPPINGS["WanUMT5Loader"] == "Wan UMT5 Loader (CLIP)"
    node = native.NODE_CLASS_MAPPINGS["WanUMT5Loader"]
    assert node.RETURN_TYPES == ("CLIP",)
    clip, = node().load(target.name, device="cpu")
    assert isinstance(clip, comfy("comfy.sd").CLIP) and _packed(clip)
