"""UMT5 encoder parity against transformers' UMT5EncoderModel, same weights, both file layouts."""

import pytest
import torch
from transformers import UMT5Config as HFConfig
from transformers import UMT5EncoderModel

from wan.errors import WanFileError
from wan.models.text.umt5 import UMT5_XXL, UMT5Encoder, load_umt5, umt5_config_from_state_dict

from text_fixtures import check, tiny_hf, to_wan_names


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    model = tiny_hf()
    # Length 150 > max_distance 128 so exact, log-spaced and clamped buckets all occur.
    ids = torch.randint(3, 320, (3, 150))
    mask = torch.ones_like(ids)
    mask[1, 90:] = 0
    mask[2, 7:] = 0
    ids[mask == 0] = 0
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return model, ids, mask, ref


@pytest.mark.parametrize("layout", ["hf", "wan"])
def test_tiny_matches_transformers(tiny, layout):
    model, ids, mask, ref = tiny
    sd = model.state_dict()
    if layout == "wan":
        sd = to_wan_names(sd)
    ours = load_umt5(sd, dtype=torch.float32)
    assert ours.config.num_heads == 2 and ours.config.dim_attn == 32 and ours.config.num_layers == 2
    with torch.no_grad():
        out = ours(ids, mask)
    check(out, ref)


def test_unmasked_single_prompt(tiny):
    model, ids, _, _ = tiny
    ours = load_umt5(model.state_dict(), dtype=torch.float32)
    with torch.no_grad():
        check(ours(ids[:1, :20]), model(input_ids=ids[:1, :20]).last_hidden_state)


def test_comfy_scaled_fp8_file(tiny):
    """ComfyUI 'scaled fp8' files: fp8 weight times a per-tensor scale_weight."""
    model, ids, mask, _ = tiny
    sd = model.state_dict()
    scaled, dequant = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}, {}
    for k, v in sd.items():
        if k.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi_0.weight", "wi_1.weight", "wo.weight")):
            scale = v.abs().max() / 448
            w8 = (v / scale).to(torch.float8_e4m3fn)
            scaled[k], scaled[k[:-6] + "scale_weight"] = w8, scale.reshape(1)
            dequant[k] = w8.float() * scale
        else:
            scaled[k] = dequant[k] = v
    ref_model = tiny_hf()
    ref_model.load_state_dict(dequant)
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=mask).last_hidden_state
        check(load_umt5(scaled, dtype=torch.float32)(ids, mask), ref)


def test_refuses_other_files(tiny):
    model, _, _, _ = tiny
    dit = {"patch_embedding.weight": torch.zeros(1, 1, 1, 1, 1), "blocks.0.self_attn.q.weight": torch.zeros(2, 2),
           "blocks.0.modulation": torch.zeros(1, 6, 2), "head.head.weight": torch.zeros(2, 2)}
    with pytest.raises(WanFileError, match="not a UMT5 text encoder"):
        load_umt5(dit, path="/x/wan2.1_t2v_1.3B.safetensors")
    t5 = {k: v for k, v in model.state_dict().items()
          if not (k.startswith("encoder.block.1.") and "relative_attention_bias" in k)}
    with pytest.raises(WanFileError, match="T5 v1.1"):
        load_umt5(t5, path="t5xxl_fp16.safetensors")


def test_full_size_names_and_shapes():
    cfg = HFConfig(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                   relative_attention_num_buckets=32, feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        ref = UMT5EncoderModel(cfg)
        ours = UMT5Encoder(UMT5_XXL)
    ref_sd = to_wan_names(ref.state_dict())
    our_sd = ours.state_dict()
    assert sorted(ref_sd) == sorted(our_sd)
    for k, v in our_sd.items():
        assert v.shape == ref_sd[k].shape, k
    assert umt5_config_from_state_dict(ref_sd) == UMT5_XXL


def test_tiny_matches_comfyui(tiny):
    """ComfyUI's own T5 code (model_type umt5), which loads ComfyUI's repackaged umt5 files."""
    from refs import comfy

    t5 = comfy("comfy.text_encoders.t5")
    ops = comfy("comfy.ops")
    model, ids, mask, _ = tiny
    cfg = dict(vocab_size=320, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=2, model_type="umt5",
               dense_act_fn="gelu_pytorch_tanh", is_gated_act=True)
    ref_model = t5.T5(cfg, torch.float32, "cpu", ops.manual_cast)
    missing, _ = ref_model.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    ours = load_umt5(model.state_dict(), dtype=torch.float32)
    with torch.no_grad():
        ref = ref_model(ids, mask)[0]
        check(ours(ids, mask), ref)


def test_packed_q8_0_weights(tiny):
    """GGUF-packed Linear weights (kept packed) against transformers with gguf-py's dequantized copy."""
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    from wan.weights.packed import PackedLinear, PackedTensor

    model, ids, mask, _ = tiny
    packed, dequant = {}, {}
    for k, v in model.state_dict().items():
        if k.endswith(("q.weight", "k.weight", "v.weight", "o.weight", "wi_0.weight", "wi_1.weight", "wo.weight")):
            raw = quants.quantize(v.numpy(), Q.Q8_0)
            packed[k] = PackedTensor(torch.from_numpy(np.ascontiguousarray(raw)).reshape(-1), "Q8_0", v.shape)
            dequant[k] = torch.from_numpy(quants.dequantize(raw, Q.Q8_0).copy()).reshape(v.shape)
        else:
            packed[k] = dequant[k] = v
    ours = load_umt5(packed, dtype=torch.float32)
    assert isinstance(ours.blocks[0].attn.q, PackedLinear)
    ref_model = tiny_hf()
    ref_model.load_state_dict(dequant)
    with torch.no_grad():
        check(ours(ids, mask), ref_model(input_ids=ids, attention_mask=mask).last_hidden_state)
