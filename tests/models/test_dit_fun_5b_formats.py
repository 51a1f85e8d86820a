"""The tiny Wan 2.2 Fun 5B control DiT in the formats a user downloads (bf16 safetensors, GGUF Q8_0 by
our quantizer) loaded by ``wan.job.load``, and a LoRA on it, plain and packed.

References: ComfyUI's own detection of the file; ComfyUI's WanModel (with its reference conv)
holding the file's tensors as safetensors / gguf-py read them (DiT parity tolerance, dit_fixtures.check);
the fp32 source for the Q8_0 error (relative L2 < 0.01, test_gguf_dit's bound); ComfyUI's
LoraLoader path (lora_fixtures.comfy_patched) for the patched weights (1e-6 * max|W|) and, through a
plain model holding them, for the packed model's LoRA output.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file

from dit_fixtures import check
from lora_fixtures import WEIGHT_TOL, comfy_patched, lora_modules, random_pairs, write_pairs
from refs import comfy
from native_fixtures import dequantized_state
from wan.install.tiny import dit_config, dit_state, write_dit
from wan.job.load import load_dit
from wan.job.options import LoadOptions
from wan.models.dit.model import WanDiT
from wan.models.identify import identify_file
from wan.weights.lora import apply_loras
from wan.weights.lora.parse import load_lora
from wan.weights.packed import PackedLinear

gguf = pytest.importorskip("gguf")
torch.set_num_threads(2)

VARIANT = "wan22_fun_control_5b"
CFG = dit_config(VARIANT)
FP32 = LoadOptions(dtype=torch.float32, device="cpu")


def inputs(seed=2):
    g = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(1, 48, 2, 4, 4, generator=g), t=torch.tensor([700.0]),
                context=torch.randn(1, 6, 4096, generator=g), y=torch.randn(1, 100, 2, 4, 4, generator=g),
                reference=torch.randn(1, 48, 4, 4, generator=g))


def run(model, inp):
    with torch.no_grad():
        return model(**inp)


def comfy_run(sd, inp):
    """ComfyUI's WanModel (5B network, reference conv) holding ``sd``, on the same inputs."""
    wan = comfy("comfy.ldm.wan.model")
    model = wan.WanModel(
        model_type="t2v", patch_size=CFG.patch_size, text_len=CFG.text_len, in_dim=CFG.in_dim, dim=CFG.dim,
        ffn_dim=CFG.ffn_dim, freq_dim=CFG.freq_dim, text_dim=CFG.text_dim, out_dim=CFG.out_dim,
        num_heads=CFG.num_heads, num_layers=CFG.num_layers, eps=CFG.eps, in_dim_ref_conv=CFG.ref_in_dim,
        device="cpu", dtype=torch.float32, operations=comfy("comfy.ops").disable_weight_init)
    model.load_state_dict(sd, strict=True)
    context = torch.cat([inp["context"], inp["context"].new_zeros(1, CFG.text_len - 6, 4096)], dim=1)
    with torch.no_grad():
        return model.eval()(torch.cat([inp["x"], inp["y"]], dim=1), inp["t"], context,
                            reference_latent=inp["reference"])


def plain(sd):
    model = WanDiT(CFG)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


def test_tiny_file_is_named_and_detected_by_comfyui(tmp_path):
    path = write_dit(tmp_path / "fun_5b_control.safetensors", VARIANT, "bf16")
    who = identify_file(path)
    assert who.role == "dit" and "fun_control" in who.detail, who  # tiny: of no released size
    sd = load_file(str(path))
    detect = comfy("comfy.model_detection").detect_unet_config(sd, "")
    assert (detect["in_dim"], detect["out_dim"], detect["in_dim_ref_conv"]) == (148, 48, 48)
    ours = load_dit(path, FP32)
    assert (ours.cfg.model_type, ours.cfg.in_dim, ours.cfg.out_dim, ours.cfg.ref_in_dim) == ("fun_control", 148, 48, 48)
    inp = inputs()
    check(run(ours, inp), comfy_run({k: v.float() for k, v in sd.items()}, inp))


def test_gguf_q8_0(tmp_path):
    path = write_dit(tmp_path / "fun_5b_control_Q8_0.gguf", VARIANT, "gguf", qtype="Q8_0")
    packed = load_dit(path, FP32)
    assert (packed.cfg.in_dim, packed.cfg.out_dim, packed.cfg.ref_in_dim) == (148, 48, 48)
    assert isinstance(packed.blocks[0].self_attn.q, PackedLinear)
    assert {m.qtype for m in packed.modules() if isinstance(m, PackedLinear)} == {"Q8_0"}
    inp = inputs()
    out = run(packed, inp)
    check(out, comfy_run(dequantized_state(path), inp))
    source = {k: (v.to(torch.bfloat16).float() if v.ndim == 2 else v) for k, v in dit_state(VARIANT).items()}
    err = rel_l2(out, run(plain(source), inp))
    print(f"Fun 5B control GGUF Q8_0 vs bf16 source: rel L2 {err:.2e}")
    assert 0 < err < 0.01


def _lora_file(tmp_path, base):
    modules = lora_modules(base)
    assert "patch_embedding" in modules and "blocks.1.cross_attn.o" in modules
    lora_sd = write_pairs(random_pairs(base, modules, seed=13), lambda m: f"diffusion_model.{m}", "lora_B.weight",
                          "lora_A.weight")
    path = tmp_path / "fun_5b_lora.safetensors"
    save_file(lora_sd, str(path))
    return path, lora_sd, modules


def test_lora_matches_comfyui(tmp_path):
    base = dit_state(VARIANT, seed=4)
    path, lora_sd, modules = _lora_file(tmp_path, base)
    merged = comfy_patched(base, lora_sd, 0.8)
    model = plain(base)
    inp = inputs()
    before = run(model, inp)
    with apply_loras(model, load_lora(path, 0.8)) as h:
        assert h.reports[0].matched == h.reports[0].total == len(modules)
        for k, v in model.state_dict().items():
            assert (v - merged[k]).abs().max() <= WEIGHT_TOL * merged[k].abs().max(), k
        out = run(model, inp)
    check(out, comfy_run(merged, inp))
    assert (out - before).abs().max() > 1e-3
    assert torch.equal(run(model, inp), before)  # restored after the run


def test_lora_on_the_gguf_file(tmp_path):
    """Packed Q8_0 weights stay packed; the LoRA's output equals ComfyUI's patch of the same
    (dequantized) weights."""
    path = write_dit(tmp_path / "fun_5b_control_Q8_0.gguf", VARIANT, "gguf", qtype="Q8_0", seed=4)
    base = dequantized_state(path)
    lora_path, lora_sd, modules = _lora_file(tmp_path, base)
    merged = comfy_patched(base, lora_sd, 0.8)
    packed = load_dit(path, FP32)
    inp = inputs()
    before = run(packed, inp)
    with apply_loras(packed, load_lora(lora_path, 0.8)) as h:
        assert h.reports[0].matched == h.reports[0].total == len(modules)
        assert isinstance(packed.blocks[0].self_attn.q, PackedLinear)
        out = run(packed, inp)
    check(out, comfy_run(merged, inp))
    assert (out - before).abs().max() > 1e-3
    assert torch.equal(run(packed, inp), before)
