"""Detection and loading of Wan DiT weights: every real variant's names and shapes (from the
references built at full size on the meta device), the three layouts, and the refusals."""

import pytest
import torch
from safetensors.torch import save_file

from dit_headers import comfy_dit_shapes
from dit_fixtures import comfy_model, diffusers_dit, diffusers_model, random_weights, tiny_config
from refs import comfy
from wan.models.dit.config import DIT_PRESETS, same_network
from wan.errors import WanFileError
from wan.models.dit.model import WanDiT
from wan.job import load
from wan.models.dit.loading import load_dit
from wan.models.dit.shapes import config_from_shapes
from wan.models.identify import identify
from wan.weights.names import dit_to_official
from wan.weights.loader import load_state_dict

torch.set_num_threads(2)

# Variants diffusers implements (T2V, I2V, FLF2V, VACE, Wan2.2 A14B experts and TI2V 5B; of the
# Fun models only those without a reference conv or camera adapter, which are I2V-shaped networks).
# diffusers has no Fun reference conv / camera adapter, and its Animate transformer's names have no
# mapping here (the published Animate file uses the official names, which ComfyUI's test covers)
DIFFUSERS_VARIANTS = [v for v, c in DIT_PRESETS.items()
                      if not (c.ref_in_dim or c.camera_in_dim or c.is_animate or c.is_humo)]  # diffusers has no HuMo
DIFFUSERS_VARIANTS = [v for v in DIFFUSERS_VARIANTS if not DIT_PRESETS[v].is_s2v]  # no S2V name mapping there


def meta_shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# Both Wan2.2 T2V A14B experts have exactly Wan2.1 T2V 14B's tensors: detection cannot (and
# need not) tell them apart, so it answers with the Wan2.1 name of the same network.
EXPECTED_NAME = {"wan22_t2v_a14b": "t2v_14b"}


@pytest.mark.parametrize("variant", list(DIT_PRESETS))
def test_full_size_comfyui_names_and_detection(variant):
    cfg = DIT_PRESETS[variant]
    ref = comfy_dit_shapes(cfg)
    with torch.device("meta"):
        ours = meta_shapes(WanDiT(cfg))
    assert ours == ref
    for prefix in ("", "model.diffusion_model."):
        sd = {prefix + k: torch.empty(s, device="meta") for k, s in ref.items()}
        found = config_from_shapes(sd)
        assert found.variant == EXPECTED_NAME.get(variant, variant)
        assert same_network(found, cfg)


@pytest.mark.parametrize("variant", DIFFUSERS_VARIANTS)
def test_full_size_diffusers_names_and_detection(variant):
    cfg = DIT_PRESETS[variant]
    with torch.device("meta"):
        ref = diffusers_dit(cfg)
        ours = meta_shapes(WanDiT(cfg))
    sd = {k: torch.empty(s, device="meta") for k, s in meta_shapes(ref).items()}
    assert {k: tuple(v.shape) for k, v in dit_to_official(sd).items()} == ours
    found = config_from_shapes(sd)
    assert found.variant == EXPECTED_NAME.get(variant, variant)
    assert same_network(found, cfg)


@pytest.fixture(scope="module")
def i2v_weights():
    cfg = tiny_config("i2v_14b")
    return cfg, random_weights(cfg)


def test_three_layouts_load_identical_weights(i2v_weights, tmp_path):
    cfg, sd = i2v_weights
    official = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    comfy_layout = {"model.diffusion_model." + k: v for k, v in official.items()}
    # The diffusers layout as diffusers itself names it: its own state dict after loading our weights.
    diffusers_layout = {k: v.to(torch.bfloat16) for k, v in diffusers_model(cfg, sd).state_dict().items()}
    assert "blocks.0.attn1.to_q.weight" in diffusers_layout and "head.modulation" not in diffusers_layout
    loaded = []
    for layout in (official, comfy_layout, diffusers_layout):
        path = tmp_path / "w.safetensors"
        save_file(layout, str(path))
        model = load_dit(load_state_dict(path), path=path, dtype=torch.bfloat16)
        assert same_network(model.cfg, cfg)
        loaded.append(model.state_dict())
    for other in loaded[1:]:
        assert other.keys() == loaded[0].keys()
        for k in other:
            assert torch.equal(other[k], loaded[0][k]), k
    assert all(v.dtype == torch.bfloat16 for v in loaded[0].values())


def test_load_keeps_tensors_without_copy_and_computes_like_reference(i2v_weights):
    cfg, sd = i2v_weights
    model = load_dit(dict(sd), dtype=torch.float32)
    # Same dtype and device: the state dict's tensors are assigned, not copied.
    assert model.blocks[0].self_attn.q.weight.data_ptr() == sd["blocks.0.self_attn.q.weight"].data_ptr()
    assert model.compute_dtype == torch.float32
    x = torch.randn(1, 16, 2, 4, 4)
    y = torch.randn(1, 20, 2, 4, 4)
    ctx = torch.randn(1, 512, 4096)
    clip = torch.randn(1, 257, 1280)
    t = torch.tensor([500.0])
    with torch.no_grad():
        ref = comfy_model(cfg, sd)(torch.cat([x, y], 1), t, ctx, clip_fea=clip)
        out = model(x, t, ctx, clip_fea=clip, y=y)
    err = (out - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item() + 1e-6, err


@pytest.mark.parametrize("residual_fp32", [False, True])
def test_bf16_storage_fp32_small_tensors(i2v_weights, residual_fp32):
    cfg, sd = i2v_weights
    model = load_dit(dict(sd), dtype=torch.bfloat16)
    model.residual_fp32 = residual_fp32
    assert model.blocks[0].ffn[0].weight.dtype == torch.bfloat16
    assert model.blocks[0].modulation.dtype == torch.float32  # fp32 in the file, computed in fp32
    assert model.compute_dtype == torch.bfloat16
    g = torch.Generator().manual_seed(3)
    args = (torch.randn(1, 16, 2, 4, 4, generator=g), torch.tensor([900.0]), torch.randn(1, 5, 4096, generator=g),
            torch.randn(1, 257, 1280, generator=g), torch.randn(1, 20, 2, 4, 4, generator=g))
    with torch.no_grad():
        out = model(*args)
        ref = comfy_model(cfg, sd)(torch.cat([args[0], args[4]], 1), args[1],
                                   torch.nn.functional.pad(args[2], (0, 0, 0, 507)), clip_fea=args[3])
    assert out.dtype == torch.float32
    # bf16 weights and activations against the fp32 reference: bf16 rounding (2^-8 relative)
    # accumulated over two blocks stays within a few percent of the output's range.
    err = (out - ref).abs().max().item()
    assert err <= 3e-2 * ref.abs().max().item(), err


# ---- refusals -------------------------------------------------------------------------------------

def _meta_keys(module, prefix=""):
    return {prefix + k: torch.empty(v.shape, device="meta") for k, v in module.state_dict().items()}


def sd_unet():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        model = UNet2DConditionModel()  # the Stable Diffusion 1.x UNet at full size
    return _meta_keys(model)


def wan_vae():
    vae = comfy("comfy.ldm.wan.vae")
    with torch.device("meta"):
        model = vae.WanVAE(z_dim=16)  # as ComfyUI builds the Wan 2.1 VAE
    return _meta_keys(model)


def umt5():
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(vocab_size=256, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=2))
    return _meta_keys(model)


def clip_vision():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                                               num_attention_heads=2, image_size=32, patch_size=8))
    return _meta_keys(model)


def lora():
    out = {}
    for i in range(2):
        for m in ("self_attn.q", "cross_attn.k", "ffn.0"):
            out[f"diffusion_model.blocks.{i}.{m}.lora_A.weight"] = torch.empty(8, 256)
            out[f"diffusion_model.blocks.{i}.{m}.lora_B.weight"] = torch.empty(256, 8)
    return out


@pytest.mark.parametrize(
    "make, role, phrase",
    [
        (sd_unet, "sd_unet", "Stable Diffusion UNet"),
        (wan_vae, "vae", "Wan 2.1 VAE"),
        (umt5, "text_encoder", "UMT5 text encoder"),
        (clip_vision, "clip_vision", "CLIP vision encoder"),
        (lora, "lora", "LoRA"),
    ],
)
def test_refuses_other_models(make, role, phrase):
    sd = make()
    assert identify(sd).role == role
    with pytest.raises(WanFileError) as err:
        load_dit(sd, path="/models/wan2.1_t2v_14b_bf16.safetensors")
    msg = str(err.value)
    assert msg.startswith("wan2.1_t2v_14b_bf16.safetensors: ") and phrase in msg, msg


def test_refuses_partial_or_corrupt_dit(i2v_weights, tmp_path):
    cfg, sd = i2v_weights
    partial = {k: v for k, v in sd.items() if not k.startswith("blocks.1.")}
    partial["blocks.1.ffn.0.weight"] = sd["blocks.1.ffn.0.weight"]
    with pytest.raises(WanFileError, match=r"part.safetensors: .*missing.*blocks\.1\."):
        load_dit(partial, path="part.safetensors")
    headless = {k: v for k, v in sd.items() if not k.startswith("head.")}
    with pytest.raises(WanFileError, match="incomplete Wan DiT: missing head.head.weight"):
        load_dit(headless, path="x.safetensors")
    bad = dict(sd, **{"blocks.0.self_attn.q.weight": torch.zeros(256, 128)})
    with pytest.raises(WanFileError, match=r"wrong shape: blocks\.0\.self_attn\.q\.weight has shape \(256, 128\)"):
        load_dit(bad, path="x.safetensors")
    with pytest.raises(WanFileError, match="holds no tensors"):
        load_dit({}, path="empty.safetensors")
    # A file cut short: the safetensors reader refuses it before we see any tensor.
    path = tmp_path / "cut.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WanFileError, match="cut.safetensors"):
        load.load_dit(path)


def test_packed_weights_are_attached_not_copied(i2v_weights):
    """Packed (fp8 here) Linear weights go through attach_packed untouched; the result computes
    exactly like the same dequantized weights loaded as plain tensors."""
    from wan.weights.packed import PackedLinear, PackedTensor

    cfg, sd = i2v_weights
    packed, plain = {}, {}
    for k, v in sd.items():
        if k.startswith("blocks.") and v.ndim == 2:
            data = v.to(torch.float8_e4m3fn).view(torch.uint8)
            packed[k] = PackedTensor(data, "fp8_e4m3fn", v.shape)
            plain[k] = data.view(torch.float8_e4m3fn).float()
        else:
            packed[k] = plain[k] = v
    assert config_from_shapes(packed) == config_from_shapes(plain)
    model = load_dit(dict(packed), dtype=torch.float32)
    q = model.blocks[1].cross_attn.k_img
    assert isinstance(q, PackedLinear)
    assert q.packed.data_ptr() == packed["blocks.1.cross_attn.k_img.weight"].data.data_ptr()
    ref = load_dit(plain, dtype=torch.float32)
    x, y = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 20, 2, 4, 4)
    ctx, clip, t = torch.randn(1, 9, 4096), torch.randn(1, 257, 1280), torch.tensor([321.0])
    with torch.no_grad():
        assert torch.equal(model(x, t, ctx, clip, y), ref(x, t, ctx, clip, y))
