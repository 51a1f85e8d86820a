"""The tiny Wan Animate DiT in the formats a user downloads (GGUF Q8_0 by our quantizer, fp8 block
weights, bf16 safetensors as the tiny writer makes them) loaded by ``wan.job.load`` and run with a
pose and a face video, and a LoRA on its blocks and face adapter applied for a run.

References: the file's own tensors read independently (gguf-py, safetensors) and held by a plain
fp32 model: the packed model agrees within the DiT parity tolerance; against the fp32 source the
GGUF Q8_0 output stays within test_gguf_dit's bound (1% relative L2). LoRA: ComfyUI's LoraLoader
patched weights (tests/support/lora_fixtures.comfy_patched) are the merged reference.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file

from dit_fixtures import check
from lora_fixtures import comfy_patched, random_pairs, write_pairs
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

VARIANT = "wan22_animate_14b"
CFG = dit_config(VARIANT)
FP32 = LoadOptions(dtype=torch.float32, device="cpu")


def inputs(seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 2, 4, 4, generator=g)
    y = torch.randn(1, 20, 2, 4, 4, generator=g)
    return dict(x=x, t=torch.tensor([700.0]), context=torch.randn(1, 6, 4096, generator=g),
                clip_fea=torch.randn(1, 257, 1280, generator=g), y=y,
                pose_latents=torch.randn(1, 16, 1, 4, 4, generator=g),
                face_pixels=torch.rand(1, 3, 1, 512, 512, generator=g) * 2 - 1)


def run(model, inp):
    with torch.no_grad():
        return model(**inp)


def plain(sd):
    model = WanDiT(CFG)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


def test_tiny_file_is_named_and_loads_in_comfyui(tmp_path):
    path = write_dit(tmp_path / "animate.safetensors", VARIANT, "bf16")
    who = identify_file(path)
    assert who.role == "dit" and "animate" in who.detail
    sd = load_file(str(path))
    detect = comfy("comfy.model_detection").detect_unet_config(sd, "")
    assert detect["model_type"] == "animate" and detect["num_layers"] == CFG.num_layers


def test_gguf_q8_0(tmp_path):
    path = write_dit(tmp_path / "animate_Q8_0.gguf", VARIANT, "gguf", qtype="Q8_0")
    packed = load_dit(path, FP32)
    assert isinstance(packed.blocks[0].self_attn.q, PackedLinear)
    ref = dequantized_state(path)
    inp = inputs()
    out = run(packed, inp)
    check(out, run(plain(ref), inp))
    source = {k: (v.to(torch.bfloat16).float() if v.ndim == 2 else v) for k, v in dit_state(VARIANT).items()}
    err = rel_l2(out, run(plain(source), inp))
    print(f"Animate GGUF Q8_0 vs bf16 source: rel L2 {err:.2e}")
    assert err < 0.01


def test_fp8(tmp_path):
    path = write_dit(tmp_path / "animate_fp8_e4m3fn.safetensors", VARIANT, "fp8")
    packed = load_dit(path, FP32)
    assert isinstance(packed.blocks[0].ffn[0], PackedLinear)
    inp = inputs()
    ref = {k: v.float() for k, v in load_file(str(path)).items()}
    check(run(packed, inp), run(plain(ref), inp))


def test_lora_on_blocks_and_face_adapter(tmp_path):
    base = dit_state(VARIANT)
    modules = ["blocks.0.self_attn.q", "blocks.4.ffn.0", "face_adapter.fuser_blocks.0.linear1_q",
               "face_adapter.fuser_blocks.0.linear2"]
    lora_sd = write_pairs(random_pairs(base, modules, seed=9), lambda m: f"diffusion_model.{m}",
                          "lora_up.weight", "lora_down.weight")
    path = tmp_path / "animate_lora.safetensors"
    save_file(lora_sd, str(path))
    # ComfyUI's model carries the motion encoder's constant blur kernels; ours does not
    merged = comfy_patched({**base, **comfy_kernels()}, lora_sd, 0.7)
    model = plain(base)
    inp = inputs()
    before = run(model, inp)
    with apply_loras(model, load_lora(path, 0.7)):
        for m in modules:
            got = model.get_submodule(m).weight
            check(got, merged[m + ".weight"])
        out = run(model, inp)
    check(out, run(plain({k: merged[k] for k in base}), inp))
    assert (out - before).abs().max() > 1e-4
    check(run(model, inp), before, rtol=0, atol=0)  # restored after the run


def comfy_kernels():
    """The blur kernels ComfyUI's AnimateWanModel holds as buffers (its own constant)."""
    kernel = comfy("comfy.ldm.wan.model_animate").Blur([1, 3, 3, 1], pad=(0, 0)).kernel
    return {f"motion_encoder.enc.net_app.convs.{i}.{part}.0.kernel": kernel.clone()
            for i in range(1, 8) for part in ("conv2", "skip")}
