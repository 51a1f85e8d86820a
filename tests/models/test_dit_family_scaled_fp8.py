"""ComfyUI's "scaled fp8" layout for the Wan family's derived DiTs (Animate, Fun control 2.1 with the
reference conv, Fun 2.2 5B control), loaded by ``wan.job.load``.

The layout (Comfy-Org's ``*_fp8_scaled`` files, read by ComfyUI's scaled_fp8_ops): every Linear
weight in float8_e4m3fn with a float32 ``scale_weight`` beside it (one per tensor), the
``scaled_fp8`` marker, everything else bf16; ComfyUI's ops swap Linear layers only, so the Animate
motion encoder's own equalized layers and the convolutions stay bf16.

References: ComfyUI's network classes (AnimateWanModel, WanModel with the reference conv) holding
the file's tensors as safetensors reads them with the scales folded in by hand (DiT parity
tolerance, dit_fixtures.check), as test_load checks the base models' scaled fp8 files; the fp32
source for the size of the fp8 rounding itself: e4m3's 3 mantissa bits cost ~3% per weight
(test_fp8), compounded here over every Linear of the network, text and time embeddings and head
included (measured 0.038-0.052 relative L2), bounded at 0.1.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from dit_fixtures import check, comfy_animate_model
from refs import comfy
from wan.install.tiny import dit_config, dit_state
from wan.job.load import load_dit
from wan.job.options import LoadOptions
from wan.models.dit.model import WanDiT
from wan.weights.packed import PackedLinear

torch.set_num_threads(2)

FP32 = LoadOptions(dtype=torch.float32, device="cpu")


def linear_weights(cfg) -> set[str]:
    with torch.device("meta"):
        model = WanDiT(cfg)
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def write_scaled_fp8(path, variant, seed=3):
    cfg = dit_config(variant)
    linears = linear_weights(cfg)
    sd = {}
    for k, v in dit_state(variant, seed).items():
        if k in linears:
            scale = v.abs().max() / 448.0
            sd[k], sd[k[: -len("weight")] + "scale_weight"] = (v / scale).to(torch.float8_e4m3fn), scale.float()
        else:
            sd[k] = v.to(torch.bfloat16)
    sd["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    save_file(sd, str(path))
    return path, linears


def folded(path) -> dict:
    """The file's tensors in fp32, fp8 x scale by hand."""
    raw = load_file(str(path))
    out = {}
    for k, v in raw.items():
        if k == "scaled_fp8" or k.endswith("scale_weight"):
            continue
        scale = raw.get(k[: -len("weight")] + "scale_weight")
        out[k] = v.float() * scale if scale is not None else v.float()
    return out


def inputs(cfg, seed=2):
    g = torch.Generator().manual_seed(seed)
    inp = dict(x=torch.randn(1, cfg.out_dim, 2, 4, 4, generator=g), t=torch.tensor([700.0]),
               context=torch.randn(1, 6, 4096, generator=g),
               y=torch.randn(1, cfg.in_dim - cfg.out_dim, 2, 4, 4, generator=g))
    if cfg.has_image_emb:
        inp["clip_fea"] = torch.randn(1, 257, 1280, generator=g)
    if cfg.is_animate:
        inp["pose_latents"] = torch.randn(1, 16, 1, 4, 4, generator=g)
        inp["face_pixels"] = torch.rand(1, 3, 1, 512, 512, generator=g) * 2 - 1
    if cfg.ref_in_dim:
        inp["reference"] = torch.randn(1, cfg.ref_in_dim, 4, 4, generator=g)
    return inp


def run(model, inp):
    with torch.no_grad():
        return model(**inp)


def comfy_run(cfg, sd, inp):
    context = torch.cat([inp["context"], inp["context"].new_zeros(1, cfg.text_len - 6, 4096)], dim=1)
    x = torch.cat([inp["x"], inp["y"]], dim=1)
    with torch.no_grad():
        if cfg.is_animate:
            return comfy_animate_model(cfg, sd)(x, inp["t"], context, clip_fea=inp["clip_fea"],
                                                pose_latents=inp["pose_latents"], face_pixel_values=inp["face_pixels"])
        model = comfy("comfy.ldm.wan.model").WanModel(
            model_type="i2v" if cfg.has_image_emb else "t2v", patch_size=cfg.patch_size, text_len=cfg.text_len,
            in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim, freq_dim=cfg.freq_dim, text_dim=cfg.text_dim,
            out_dim=cfg.out_dim, num_heads=cfg.num_heads, num_layers=cfg.num_layers, eps=cfg.eps,
            in_dim_ref_conv=cfg.ref_in_dim, device="cpu", dtype=torch.float32,
            operations=comfy("comfy.ops").disable_weight_init)
        model.load_state_dict(sd, strict=True)
        return model.eval()(x, inp["t"], context, clip_fea=inp.get("clip_fea"), reference_latent=inp["reference"])


@pytest.mark.parametrize("variant", ["wan22_animate_14b", "fun_control_ref_1_3b", "wan22_fun_control_5b"])
def test_scaled_fp8_file_matches_comfyui_on_its_tensors(tmp_path, variant):
    cfg = dit_config(variant)
    path, linears = write_scaled_fp8(tmp_path / f"{variant}_fp8_scaled.safetensors", variant)
    ours = load_dit(path, FP32)
    packed = {f"{n}.weight" for n, m in ours.named_modules() if isinstance(m, PackedLinear)}
    assert packed == linears  # every Linear stays fp8 in memory
    assert {m.qtype for m in ours.modules() if isinstance(m, PackedLinear)} == {"fp8_e4m3fn"}
    if cfg.is_animate:
        assert any(k.startswith("face_adapter.") for k in packed)
    inp = inputs(cfg)
    out = run(ours, inp)
    check(out, comfy_run(cfg, folded(path), inp))
    source = WanDiT(cfg)
    source.load_state_dict({k: v if k in linears else v.to(torch.bfloat16).float()
                            for k, v in dit_state(variant, 3).items()}, strict=True)
    err = float((out - run(source.eval(), inp)).norm() / run(source, inp).norm())
    print(f"{variant} scaled fp8 vs fp32 source: rel L2 {err:.2e}")
    assert 0 < err < 0.1
