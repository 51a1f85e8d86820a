"""The Fun DiTs through the weight paths the base models take: GGUF Q8_0 (packed, dequantized per
layer), LoRA (applied for a run and restored), and ComfyUI's own loader on the same files.

References: gguf-py's dequantization of the same file loaded as plain weights (fp32 rounding:
rtol 1e-4, atol 1e-5, as test_gguf_dit) and the fp32 model (Q8_0 relative L2 error < 0.01, the
bound of test_gguf_dit); ComfyUI's LoraLoader path (lora_fixtures.comfy_patched: its detection of
the Fun model from the weights, its key map, its patch arithmetic) for the LoRA-patched weights
(1e-6 * max|W|).
"""

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import make_inputs, random_weights
from lora_fixtures import WEIGHT_TOL, comfy_patched, lora_modules, random_pairs, write_pairs
from refs import comfy
from native_fixtures import dequantized_state
from wan.job.load import load_dit
from wan.job.options import LoadOptions
from wan.models.dit.config import DIT_PRESETS
from wan.models.dit.model import WanDiT
from wan.weights.lora import apply_loras, load_lora
from wan.weights.packed import PackedLinear
from wan.weights.quantize import write_gguf

gguf = pytest.importorskip("gguf")
FP32 = LoadOptions(dtype=torch.float32, device="cpu")
torch.set_num_threads(2)


def _model(cfg, sd):
    model = WanDiT(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _extras(cfg, inp):
    _, _, f, h, w = inp.x.shape
    g = torch.Generator().manual_seed(9)
    out = {}
    if cfg.camera_in_dim:
        out["camera"] = torch.randn(1, cfg.camera_in_dim, f, 8 * h, 8 * w, generator=g)
    if cfg.ref_in_dim:
        out["reference"] = torch.randn(1, cfg.ref_in_dim, h, w, generator=g)
    return out


@pytest.mark.parametrize("variant", ["fun_control_1_3b", "wan22_fun_control_a14b", "camera_1_3b"])
def test_fun_gguf_q8_0(tmp_path, variant):
    cfg = DIT_PRESETS[variant].tiny()
    full = _model(cfg, random_weights(cfg, seed=4))
    path = tmp_path / "fun.gguf"
    plan = write_gguf(full.state_dict(), path, "Q8_0")
    assert plan["blocks.0.self_attn.q.weight"] == "Q8_0"
    packed = load_dit(path, FP32)  # the loader users run: detection, packing, placement
    assert isinstance(packed.blocks[0].self_attn.q, PackedLinear)
    ref_sd = dequantized_state(path)
    ref = _model(cfg, ref_sd)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    kw = dict(clip_fea=inp.clip_fea, y=inp.y, **_extras(cfg, inp))
    with torch.no_grad():
        out = packed(inp.x, inp.t, inp.context, **kw)
        want = ref(inp.x, inp.t, inp.context, **kw)
        exact = full(inp.x, inp.t, inp.context, **kw)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    rel = float((out - exact).norm() / exact.norm())
    print(f"{variant} Q8_0: relative output error vs fp32 {rel:.5f}")
    assert 0 < rel < 0.01


@pytest.mark.parametrize("variant", ["fun_control_1_3b", "wan22_camera_a14b"])
def test_fun_lora_matches_comfyui(tmp_path, variant):
    cfg = DIT_PRESETS[variant].tiny()
    base = random_weights(cfg, seed=6)
    modules = lora_modules(base)
    lora_sd = write_pairs(random_pairs(base, modules, seed=31), lambda m: f"diffusion_model.{m}", "lora_B.weight",
                          "lora_A.weight")
    save_file(lora_sd, str(tmp_path / "fun_lora.safetensors"))
    ref = comfy_patched(base, lora_sd, 0.8)
    model = _model(cfg, base)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    kw = dict(clip_fea=inp.clip_fea, y=inp.y, **_extras(cfg, inp))
    with torch.no_grad():
        before = model(inp.x, inp.t, inp.context, **kw)
        with apply_loras(model, load_lora(tmp_path / "fun_lora.safetensors", 0.8)) as h:
            assert h.reports[0].matched == h.reports[0].total == len(modules)
            for k, v in model.state_dict().items():
                assert (v - ref[k]).abs().max() <= WEIGHT_TOL * ref[k].abs().max(), k
            during = model(inp.x, inp.t, inp.context, **kw)
        after = model(inp.x, inp.t, inp.context, **kw)
    assert torch.equal(before, after)
    assert (during - before).abs().max() > 1e-3


def test_comfyui_detects_our_fun_presets():
    """ComfyUI's own detection on our presets' tensors names the same family (its supported model)."""
    detect = comfy("comfy.model_detection")
    expected = {"fun_control_1_3b": "WAN21_FunControl2V", "camera_1_3b": "WAN21_Camera",
                "wan22_camera_a14b": "WAN22_Camera", "fun_inpaint_1_3b": "WAN21_I2V",
                "wan22_fun_control_5b": "WAN22_T2V"}  # ComfyUI: the 5B network, its y read from the weights
    for variant, name in expected.items():
        with torch.device("meta"):
            sd = WanDiT(DIT_PRESETS[variant].tiny()).state_dict()
        config = detect.model_config_from_unet(sd, "")
        assert type(config).__name__ == name, (variant, type(config).__name__)


@pytest.mark.parametrize("variant", ["wan22_fun_control_a14b", "camera_14b"])
def test_fun_block_swap_and_step_cache_paths(variant):
    """Block swap (simulated on the CPU: swapped blocks cloned in and dropped) gives the unswapped
    output bit for bit with the reference tokens / camera adapter in play; the embed -> run_block
    -> finish path the wrappers use equals forward."""
    from wan.runtime.blockswap import enable_block_swap

    cfg = DIT_PRESETS[variant].tiny(num_layers=3)
    sd = random_weights(cfg, seed=12)
    plain, swapped = _model(cfg, sd), _model(cfg, sd)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    kw = dict(clip_fea=inp.clip_fea, y=inp.y, **_extras(cfg, inp))
    with torch.no_grad():
        want = plain(inp.x, inp.t, inp.context, **kw)
        swapper = enable_block_swap(swapped, 2, "cpu", "cpu", prefetch=False, offload_embeddings=True, simulate=True)
        assert swapper.active
        got = swapped(inp.x, inp.t, inp.context, **kw)
        state = plain.embed(inp.x, inp.t, inp.context, inp.clip_fea, inp.y, None, 1.0, camera=kw.get("camera"),
                            reference=kw.get("reference"))
        for i in range(cfg.num_layers):
            plain.run_block(i, state)
        pieces = plain.finish(state)
    assert torch.equal(got, want) and torch.equal(pieces, want)
    if cfg.ref_in_dim:
        assert state.prefix == 16 // 4 and state.x.shape[1] == 2 * 4 + state.prefix  # one frame of h*w/4 tokens
