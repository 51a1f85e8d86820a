"""The Wan S2V DiT through the weight paths the base models take: GGUF Q8_0 (packed, dequantized
per layer), LoRA (applied for a run and restored, against ComfyUI's LoraLoader path), ComfyUI's
detection of our preset, and block swap / the embed -> run_block -> finish path.

Tolerances as test_dit_fun_weights: gguf-py's dequantization loaded as plain weights (rtol 1e-4,
atol 1e-5), Q8_0 vs fp32 relative L2 < 0.01, LoRA-patched weights 1e-6 * max|W|.
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
from wan.models.dit.s2v import SoundInputs
from wan.weights.lora import apply_loras, load_lora
from wan.weights.packed import PackedLinear
from wan.weights.quantize import write_gguf

gguf = pytest.importorskip("gguf")
FP32 = LoadOptions(dtype=torch.float32, device="cpu")
torch.set_num_threads(2)
CFG = DIT_PRESETS["wan22_s2v_14b"].tiny()


def _model(cfg, sd):
    model = WanDiT(cfg)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _sound(frames=2, h=8, w=8):
    g = torch.Generator().manual_seed(9)
    return SoundInputs(torch.randn(1, 25, 1024, 4 * frames, generator=g), torch.randn(1, 16, 1, h, w, generator=g),
                       torch.randn(1, 16, 19, h, w, generator=g), torch.randn(1, 16, frames, h, w, generator=g))


def test_s2v_gguf_q8_0(tmp_path):
    full = _model(CFG, random_weights(CFG, seed=4))
    path = tmp_path / "s2v.gguf"
    plan = write_gguf(full.state_dict(), path, "Q8_0")
    assert plan["blocks.0.self_attn.q.weight"] == "Q8_0"
    packed = load_dit(path, FP32)  # the loader users run: detection, packing, placement
    assert isinstance(packed.blocks[0].self_attn.q, PackedLinear)
    ref_sd = dequantized_state(path)
    ref = _model(CFG, ref_sd)
    inp = make_inputs(CFG, frames=2, height=8, width=8)
    with torch.no_grad():
        out = packed(inp.x, inp.t, inp.context, sound=_sound())
        want = ref(inp.x, inp.t, inp.context, sound=_sound())
        exact = full(inp.x, inp.t, inp.context, sound=_sound())
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
    rel = float((out - exact).norm() / exact.norm())
    print(f"S2V Q8_0: relative output error vs fp32 {rel:.5f}")
    assert 0 < rel < 0.01


def test_s2v_lora_matches_comfyui(tmp_path):
    base = random_weights(CFG, seed=6)
    modules = lora_modules(base)
    assert any(m.startswith("audio_injector.") for m in modules)
    lora_sd = write_pairs(random_pairs(base, modules, seed=31), lambda m: f"diffusion_model.{m}", "lora_B.weight",
                          "lora_A.weight")
    save_file(lora_sd, str(tmp_path / "s2v_lora.safetensors"))
    ref = comfy_patched(base, lora_sd, 0.8)
    model = _model(CFG, base)
    inp = make_inputs(CFG, frames=2, height=8, width=8)
    with torch.no_grad():
        before = model(inp.x, inp.t, inp.context, sound=_sound())
        with apply_loras(model, load_lora(tmp_path / "s2v_lora.safetensors", 0.8)) as h:
            assert h.reports[0].matched == h.reports[0].total == len(modules)
            for k, v in model.state_dict().items():
                assert (v - ref[k]).abs().max() <= WEIGHT_TOL * ref[k].abs().max(), k
            during = model(inp.x, inp.t, inp.context, sound=_sound())
        after = model(inp.x, inp.t, inp.context, sound=_sound())
    assert torch.equal(before, after)
    assert (during - before).abs().max() > 1e-3


def test_comfyui_detects_our_s2v_preset():
    detect = comfy("comfy.model_detection")
    for cfg in (CFG, DIT_PRESETS["wan22_s2v_14b"]):
        with torch.device("meta"):
            sd = WanDiT(cfg).state_dict()
        assert type(detect.model_config_from_unet(sd, "")).__name__ == "WAN22_S2V"


def test_s2v_block_swap_and_step_cache_paths():
    """Block swap (simulated on the CPU) gives the unswapped output bit for bit with the audio
    injector, reference and motion tokens in play; embed -> run_block -> finish equals forward."""
    from wan.runtime.blockswap import enable_block_swap

    sd = random_weights(CFG, seed=12)
    plain, swapped = _model(CFG, sd), _model(CFG, sd)
    inp = make_inputs(CFG, frames=2, height=8, width=8)
    with torch.no_grad():
        want = plain(inp.x, inp.t, inp.context, sound=_sound())
        swapper = enable_block_swap(swapped, 3, "cpu", "cpu", prefetch=False, offload_embeddings=True, simulate=True)
        assert swapper.active
        got = swapped(inp.x, inp.t, inp.context, sound=_sound())
        state = plain.embed(inp.x, inp.t, inp.context, sound=_sound())
        for i in range(CFG.num_layers):
            plain.run_block(i, state)
        pieces = plain.finish(state)
    assert torch.equal(got, want) and torch.equal(pieces, want)
    assert state.suffix == 16 + 16 + 4 + 4  # reference frame; motion at 1x (4x4), 2x (one frame of 2x2), 4x (4 frames of 1x1)
