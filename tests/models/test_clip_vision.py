"""CLIP vision parity: transformers' CLIPVisionModelWithProjection and ComfyUI's clip_vision code."""

import pytest
import torch
from refs import comfy
from transformers import CLIPVisionConfig as HFConfig
from transformers import CLIPVisionModelWithProjection

from wan.errors import WanFileError, WanInputError
from wan.models.clip_vision import VIT_H_14, CLIPVisionH, clip_vision_config_from_state_dict, load_clip_vision

# max|ours - ref| <= RTOL * max|ref| + ATOL, fp32 on CPU.
RTOL, ATOL = 1e-5, 1e-6

TINY = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=16, intermediate_size=128, patch_size=14,
            image_size=56, projection_dim=32, hidden_act="gelu", layer_norm_eps=1e-5)


def check(ours, ref):
    err = (ours - ref).abs().max().item()
    tol = RTOL * ref.abs().max().item() + ATOL
    assert err <= tol, f"max|diff| {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def tiny_hf():
    torch.manual_seed(3)
    model = CLIPVisionModelWithProjection(HFConfig(**TINY, attn_implementation="eager")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + ("norm" in name and name.endswith("weight")))
    return model


def test_penultimate_matches_transformers(tiny_hf):
    ours = load_clip_vision(tiny_hf.state_dict(), dtype=torch.float32)
    assert ours.config.image_size == 56 and ours.config.layers == 3 and ours.config.heads == 16
    pixels = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        ref = tiny_hf(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
        out = ours(pixels)
    assert out.shape == (2, 17, 64)
    check(out, ref)


def test_encode_matches_comfyui(tiny_hf):
    """ComfyUI's CLIPVisionEncode path: clip_preprocess then the model's intermediate_output=-2."""
    clip_vision = comfy("comfy.clip_vision")
    clip_model = comfy("comfy.clip_model")
    ops = comfy("comfy.ops")
    cfg = dict(TINY, num_channels=3, model_type="clip_vision_model")
    ref_model = clip_model.CLIPVisionModelProjection(cfg, torch.float32, "cpu", ops.manual_cast)
    missing, _ = ref_model.load_state_dict(tiny_hf.state_dict(), strict=False)
    assert not missing
    ours = load_clip_vision(tiny_hf.state_dict(), dtype=torch.float32)
    images = torch.rand(2, 70, 90, 3)
    for crop in (True, False):
        pixels = clip_vision.clip_preprocess(images, size=56, crop=crop).float()
        with torch.no_grad():
            ref = ref_model(pixel_values=pixels, intermediate_output=-2)[1]
        check(ours.encode(images, crop=crop), ref)


@pytest.mark.parametrize("shape", [(1, 224, 224, 3), (2, 300, 200, 3), (1, 97, 411, 3), (1, 480, 832, 4),
                                   (3, 150, 150, 3), (1, 225, 223, 3)])
@pytest.mark.parametrize("crop", [True, False])
def test_preprocess_matches_comfyui(shape, crop):
    clip_vision = comfy("comfy.clip_vision")
    model = CLIPVisionH.__new__(CLIPVisionH)  # preprocessing needs only the config
    model.config = VIT_H_14
    images = torch.rand(shape)
    ref = clip_vision.clip_preprocess(images, size=224, crop=crop)
    out = model.preprocess(images, crop=crop)
    assert out.shape == (shape[0], 3, 224, 224)
    check(out, ref)


def test_refusals(tiny_hf):
    umt5 = {"shared.weight": torch.zeros(2, 2), "encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(2, 2)}
    with pytest.raises(WanFileError, match="UMT5 text encoder"):
        load_clip_vision(umt5, path="umt5_xxl_fp16.safetensors")
    sd = dict(tiny_hf.state_dict())
    del sd["vision_model.encoder.layers.1.mlp.fc2.bias"]
    with pytest.raises(WanFileError, match="missing"):
        load_clip_vision(sd, path="clip_vision_h.safetensors")
    model = load_clip_vision(tiny_hf.state_dict(), dtype=torch.float32)
    with pytest.raises(WanInputError):
        model.preprocess(torch.rand(1, 3, 64, 64))


def test_full_size_names_and_shapes():
    cfg = HFConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120,
                   patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu")
    with torch.device("meta"):
        ref = CLIPVisionModelWithProjection(cfg)
        ours = CLIPVisionH(VIT_H_14)
    ref_sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("position_ids")}
    our_sd = ours.state_dict()
    assert sorted(ref_sd) == sorted(our_sd)
    for k, v in our_sd.items():
        assert v.shape == ref_sd[k].shape, k
    assert clip_vision_config_from_state_dict(ref_sd) == VIT_H_14
    assert VIT_H_14.num_tokens == 257
