"""LoRA formats: files written here from seeded A/B matrices, patched weights compared with ComfyUI.

For every dialect ComfyUI 0.3.75 reads (original/ComfyUI names, kohya/musubi, Wan-Fun, diff /
diff_b deltas) the reference is ComfyUI's own path: ``model_lora_keys_unet`` + ``load_lora`` +
``ModelPatcher.add_patches`` + ``patch_model`` on the same base weights. It maps none of the
diffusers/PEFT names for Wan, so there the names come from diffusers' own official->diffusers
converter and the expected weight is W + strength * alpha/rank * B @ A computed here.

Tolerances (fp32 on CPU): both sides compute W + s * (B @ A) in fp32 with the same operation
order, so the patched weights must agree to max|diff| <= 1e-6 * max|W| (measured: 0, bit-exact);
model outputs to dit_fixtures.check's 1e-5 * max|ref| + 1e-6.
"""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import check, comfy_model, make_inputs, random_weights
from lora_fixtures import CFG, RANK, WEIGHT_TOL, comfy_patched, lora_modules, our_model, random_pairs, write_pairs
from wan.weights.lora import apply_loras, load_lora

torch.set_num_threads(2)

STRENGTH = 0.7


@pytest.fixture(scope="module")
def base():
    return random_weights(CFG, seed=0)


def ours_patched(base_sd, path, strength):
    model = our_model(base_sd)
    lora = load_lora(path, strength)
    with apply_loras(model, lora) as handle:
        patched = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return patched, handle.reports[0]


def assert_weights_equal(ours, ref, base_sd, must_change):
    worst = 0.0
    for k in base_sd:
        err = (ours[k] - ref[k]).abs().max().item()
        worst = max(worst, err / (ref[k].abs().max().item() or 1.0))
        assert err <= WEIGHT_TOL * ref[k].abs().max().item(), f"{k}: max|ours - comfy| = {err:.3e}"
    changed = {k for k in base_sd if not torch.equal(ref[k], base_sd[k])}
    assert changed == set(must_change), sorted(changed ^ set(must_change))[:5]
    return worst


FORMATS = {
    # name: (module name writer, up key, down key, ComfyUI reference's name writer)
    "comfy_AB": (lambda m: f"diffusion_model.{m}", "lora_B.weight", "lora_A.weight", None),
    "comfy_updown": (lambda m: f"diffusion_model.{m}", "lora_up.weight", "lora_down.weight", None),
    # ComfyUI 0.3.75 maps no un-prefixed Wan names: its reference is the same file, prefixed.
    "bare_AB": (lambda m: m, "lora_B.weight", "lora_A.weight", lambda m: f"diffusion_model.{m}"),
    "kohya": (lambda m: "lora_unet_" + m.replace(".", "_"), "lora_up.weight", "lora_down.weight", None),
    "wan_fun": (lambda m: "lora_unet__" + m.replace(".", "_"), "lora_up.weight", "lora_down.weight", None),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_low_rank_formats_match_comfyui(fmt, base, tmp_path, caplog):
    name_of, up_key, down_key, ref_name = FORMATS[fmt]
    modules = lora_modules(base)
    pairs = random_pairs(base, modules)
    lora_sd = write_pairs(pairs, name_of, up_key, down_key)
    path = tmp_path / f"{fmt}.safetensors"
    save_file(lora_sd, str(path))
    ref_sd = lora_sd if ref_name is None else write_pairs(pairs, ref_name, up_key, down_key)
    with caplog.at_level(logging.WARNING):
        ref = comfy_patched(base, ref_sd, STRENGTH)
    ours, report = ours_patched(base, path, STRENGTH)
    assert report.matched == report.total == len(modules), report.describe()
    assert_weights_equal(ours, ref, base, [m + ".weight" for m in modules])


def test_diff_deltas_match_comfyui(base, tmp_path):
    """lightx2v-style full-rank deltas: diff (Linear, norm gains), diff_b (biases), modulation."""
    g = torch.Generator().manual_seed(3)

    def rnd(name):
        return 0.05 * torch.randn(base[name].shape, generator=g)

    ours_sd = {
        "diffusion_model.blocks.0.ffn.0.diff": rnd("blocks.0.ffn.0.weight"),
        "diffusion_model.blocks.0.ffn.0.diff_b": rnd("blocks.0.ffn.0.bias"),
        "diffusion_model.blocks.0.norm3.diff": rnd("blocks.0.norm3.weight"),
        "diffusion_model.blocks.0.norm3.diff_b": rnd("blocks.0.norm3.bias"),
        "diffusion_model.blocks.1.self_attn.norm_q.diff": rnd("blocks.1.self_attn.norm_q.weight"),
        "diffusion_model.blocks.1.cross_attn.norm_k_img.diff": rnd("blocks.1.cross_attn.norm_k_img.weight"),
        "diffusion_model.head.head.diff_b": rnd("head.head.bias"),
        "diffusion_model.time_projection.1.diff_b": rnd("time_projection.1.bias"),
        "diffusion_model.img_emb.proj.0.diff": rnd("img_emb.proj.0.weight"),
        "diffusion_model.patch_embedding.diff_b": rnd("patch_embedding.bias"),
        "diffusion_model.blocks.0.modulation.diff": rnd("blocks.0.modulation"),
        # lightx2v writes the block modulation as <block>.diff_m, which ComfyUI 0.3.75 does not read;
        # its reference below gets the same tensor as blocks.1.modulation.diff.
        "diffusion_model.blocks.1.diff_m": rnd("blocks.1.modulation"),
        # and a low-rank pair alongside, as those files have
        "diffusion_model.blocks.1.self_attn.q.lora_down.weight": 0.1 * torch.randn(RANK, CFG.dim, generator=g),
        "diffusion_model.blocks.1.self_attn.q.lora_up.weight": 0.1 * torch.randn(CFG.dim, RANK, generator=g),
        "diffusion_model.blocks.1.self_attn.q.alpha": torch.tensor(8.0),
    }
    ref_sd = dict(ours_sd)
    ref_sd["diffusion_model.blocks.1.modulation.diff"] = ref_sd.pop("diffusion_model.blocks.1.diff_m")
    path = tmp_path / "distill.safetensors"
    save_file(ours_sd, str(path))
    ref = comfy_patched(base, ref_sd, STRENGTH)
    ours, report = ours_patched(base, path, STRENGTH)
    assert report.matched == report.total == 13, report.describe()
    targets = [k.removeprefix("diffusion_model.").replace(".diff_b", ".bias").replace(".diff_m", ".modulation")
               .replace("modulation.diff", "modulation").replace(".diff", ".weight")
               .replace(".lora_down.weight", ".weight") for k in ours_sd if not k.endswith(("up.weight", "alpha"))]
    assert_weights_equal(ours, ref, base, targets)


def test_forward_with_lora_matches_comfyui_model(base, tmp_path):
    """End to end: our DiT under apply_loras vs ComfyUI's WanModel holding ComfyUI-patched weights."""
    modules = [m for m in lora_modules(base) if m.startswith("blocks.") or m.startswith("head")]
    lora_sd = write_pairs(random_pairs(base, modules, seed=5), lambda m: f"diffusion_model.{m}",
                          "lora_up.weight", "lora_down.weight")
    lora_sd["diffusion_model.blocks.0.diff_m"] = 0.05 * torch.randn(1, 6, CFG.dim)
    ref_sd = dict(lora_sd)
    ref_sd["diffusion_model.blocks.0.modulation.diff"] = ref_sd.pop("diffusion_model.blocks.0.diff_m")
    path = tmp_path / "style.safetensors"
    save_file(lora_sd, str(path))
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    ref_model = comfy_model(CFG, comfy_patched(base, ref_sd, 1.0))
    x = torch.cat([inp.x, inp.y], dim=1)
    with torch.no_grad():
        ref = ref_model(x, inp.t, inp.context_padded, clip_fea=inp.clip_fea)
        model = our_model(base)
        plain = model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y)
        with apply_loras(model, load_lora(path)):
            out = model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y)
    check(out, ref)
    assert (out - plain).abs().max() > 1e-3, "the LoRA changed nothing: the test would not see a bug"
