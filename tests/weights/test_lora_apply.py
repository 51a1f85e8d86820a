"""LoRA application: diffusers/PEFT names, packed layers on the fly, stacking, restoring, refusals.

References: diffusers' own official->diffusers key converter and its WanTransformer3DModel for the
names (ComfyUI 0.3.75 maps none of them for Wan), W + s * alpha/rank * B @ A computed here for the
values; ComfyUI's LoraLoader path for stacking. Tolerances (fp32, CPU): weights 1e-6 * max|W|
(measured 0); model outputs on the fly vs merged 1e-5 * max|ref| + 1e-6 (dit_fixtures.check).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from dit_fixtures import TINY_VARIANTS, check, make_inputs, random_weights, tiny_config
from lora_fixtures import CFG, RANK, WEIGHT_TOL, comfy_patched, lora_modules, our_model, random_pairs, write_pairs
from wan.models.dit.config import DIT_PRESETS
from wan.errors import WanFileError, WanInputError
from wan.models.dit.model import WanDiT
from wan.weights.lora import apply_loras, chain_add, load_lora, merge_weight
from wan.weights.lora.formats import build_index, resolve_site
from wan.weights.packed import PackedLinear, PackedTensor

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def base():
    return random_weights(CFG, seed=0)


def _diffusers_names(sd) -> dict[str, str]:
    """official parameter name -> diffusers name, by diffusers' own single-file converter."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    marked = {k: torch.empty(0) for k in sd}
    ids = {id(v): k for k, v in marked.items()}
    return {ids[id(v)]: k for k, v in convert_wan_transformer_to_diffusers(dict(marked)).items()}


@pytest.mark.parametrize("variant", TINY_VARIANTS)
def test_every_layer_resolves_from_each_dialect(variant):
    """Names only, every variant: diffusers' names, kohya-flattened official and diffusers names."""
    cfg = tiny_config(variant)
    with torch.device("meta"):
        params = {k: tuple(v.shape) for k, v in WanDiT(cfg).state_dict().items()}
    index = build_index(params)
    to_diffusers = _diffusers_names(params)
    for name in params:
        site, leaf = name.rsplit(".", 1) if name.endswith((".weight", ".bias")) else (name, None)
        dname = to_diffusers[name]
        dsite = dname.rsplit(".", 1)[0] if leaf else dname
        for raw in (f"diffusion_model.{site}", site, f"transformer.{dsite}", f"base_model.model.{dsite}",
                    f"diffusion_model.{dsite}", "lora_unet_" + site.replace(".", "_"),
                    "lora_transformer_" + dsite.replace(".", "_")):
            assert resolve_site(raw, index) is not None and resolve_site(raw, index)[0] == site, (raw, site)


def test_full_size_names_are_unambiguous():
    """At real size (40 blocks, meta device) no flattened kohya alias is claimed by two layers."""
    cfg = DIT_PRESETS["i2v_14b"]
    with torch.device("meta"):
        params = {k: tuple(v.shape) for k, v in WanDiT(cfg).state_dict().items()}
    index = build_index(params)
    sites = {k.rsplit(".", 1)[0] if k.endswith((".weight", ".bias")) else k for k in params}
    assert set(index.flat.values()) == sites
    assert resolve_site("lora_unet_blocks_13_cross_attn_v_img", index)[0] == "blocks.13.cross_attn.v_img"


def test_diffusers_peft_lora(base, tmp_path):
    from diffusers import WanTransformer3DModel

    modules = lora_modules(base)
    to_diffusers = {k[: -len(".weight")]: v[: -len(".weight")] for k, v in _diffusers_names(base).items()
                    if k.endswith(".weight")}
    with torch.device("meta"):
        theirs = WanTransformer3DModel(
            patch_size=CFG.patch_size, num_attention_heads=CFG.num_heads, attention_head_dim=CFG.head_dim,
            in_channels=CFG.in_dim, out_channels=CFG.out_dim, text_dim=CFG.text_dim, freq_dim=CFG.freq_dim,
            ffn_dim=CFG.ffn_dim, num_layers=CFG.num_layers, image_dim=CFG.img_dim, added_kv_proj_dim=CFG.dim)
    their_modules = dict(theirs.named_modules())
    prefixes = ["transformer.", "base_model.model.", "diffusion_model."]
    pairs = random_pairs(base, modules, seed=7)
    lora_sd = {}
    for i, (m, (up, down, alpha)) in enumerate(pairs.items()):
        d = to_diffusers[m]
        assert d in their_modules, d  # the LoRA names real diffusers layers
        name = prefixes[i % 3] + d if i % 4 != 3 else "lora_transformer_" + d.replace(".", "_")
        lora_sd[f"{name}.lora_B.weight"] = up.contiguous()
        lora_sd[f"{name}.lora_A.weight"] = down.contiguous()
        if alpha is not None:
            lora_sd[f"{name}.alpha"] = torch.tensor(alpha)
    path = tmp_path / "peft.safetensors"
    save_file(lora_sd, str(path))
    model = our_model(base)
    with apply_loras(model, load_lora(path, 0.8)) as h:
        ours = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert h.reports[0].matched == h.reports[0].total == len(modules)
    for m, (up, down, alpha) in pairs.items():
        w = base[m + ".weight"]
        scale = 0.8 * (1.0 if alpha is None else alpha / RANK)
        expected = w + (scale * (up.flatten(1) @ down.flatten(1))).reshape(w.shape)
        assert (ours[m + ".weight"] - expected).abs().max() <= WEIGHT_TOL * expected.abs().max(), m


def test_stacked_loras_match_comfyui(base, tmp_path):
    modules = lora_modules(base)
    a = write_pairs(random_pairs(base, modules, seed=11), lambda m: f"diffusion_model.{m}", "lora_B.weight",
                    "lora_A.weight")
    b = write_pairs(random_pairs(base, modules[::2], seed=12), lambda m: "lora_unet_" + m.replace(".", "_"),
                    "lora_up.weight", "lora_down.weight")
    save_file(a, str(tmp_path / "a.safetensors"))
    save_file(b, str(tmp_path / "b.safetensors"))
    la, lb = load_lora(tmp_path / "a.safetensors", 0.5), load_lora(tmp_path / "b.safetensors")
    chain = chain_add(chain_add(None, la), lb, -1.25)
    assert chain[0] == (la, 0.5) and len(chain_add(chain, la)) == 3 and len(chain) == 2
    ref = comfy_patched(base, a, 0.5, (b, -1.25))
    model = our_model(base)
    with apply_loras(model, chain):
        for k, v in model.state_dict().items():
            assert (v - ref[k]).abs().max() <= WEIGHT_TOL * ref[k].abs().max(), k


def _pack(model: WanDiT, names, kind: str) -> WanDiT:
    """Replace Linear layers by PackedLinear (F32 bytes, or scaled fp8) and return the float model
    holding exactly the values the packed layers expand to."""
    plain = WanDiT(CFG)
    plain.load_state_dict(model.state_dict())
    for name in names:
        lin = model.get_submodule(name)
        w = lin.weight.detach()
        if kind == "F32":
            packed = PackedTensor(w.contiguous().view(torch.uint8).flatten(), "F32", w.shape)
        else:
            scale = w.abs().max().item() / 200
            packed = PackedTensor((w / scale).to(torch.float8_e4m3fn).view(torch.uint8), "fp8_e4m3fn", w.shape, scale)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, PackedLinear(packed, lin.bias.detach().clone()))
        plain.get_submodule(name).weight.data.copy_(packed.dequantize(torch.float32))
    return plain


@pytest.mark.parametrize("kind", ["F32", "fp8_e4m3fn"])
def test_packed_on_the_fly_equals_merged(base, tmp_path, kind):
    modules = [m for m in lora_modules(base) if m.startswith(("blocks.", "head."))]
    lora_sd = write_pairs(random_pairs(base, modules, seed=21), lambda m: f"diffusion_model.{m}",
                          "lora_up.weight", "lora_down.weight")
    lora_sd["diffusion_model.blocks.0.ffn.2.diff"] = 0.02 * torch.randn(CFG.dim, CFG.ffn_dim)
    lora_sd["diffusion_model.blocks.0.ffn.2.diff_b"] = 0.02 * torch.randn(CFG.dim)
    save_file(lora_sd, str(tmp_path / "l.safetensors"))
    lora = load_lora(tmp_path / "l.safetensors", 0.9)
    packed_model = our_model(base)
    plain = _pack(packed_model, [m for m in modules if not m.endswith("norm3")], kind)
    inp = make_inputs(CFG, frames=2, height=4, width=4)
    args = (inp.x, inp.t, inp.context)
    kw = dict(clip_fea=inp.clip_fea, y=inp.y)
    with torch.no_grad():
        before = packed_model(*args, **kw)
        with apply_loras(packed_model, lora) as h:
            fly = packed_model(*args, **kw)
        after = packed_model(*args, **kw)
        with apply_loras(plain, lora) as hp:
            merged = plain(*args, **kw)
    assert sorted(h.runtime) == sorted(m + ".weight" for m in modules) and not hp.runtime
    assert "blocks.0.ffn.2.bias" in h.merged  # the packed layer's plain bias is merged
    check(fly, merged)
    assert torch.equal(before, after), "hooks left behind"
    assert (fly - before).abs().max() > 1e-3


@pytest.mark.parametrize("merge", ["copy", "inplace"])
def test_base_is_bit_identical_after_a_run(base, tmp_path, merge):
    modules = lora_modules(base)
    lora_sd = write_pairs(random_pairs(base, modules), lambda m: f"diffusion_model.{m}", "lora_B.weight",
                          "lora_A.weight")
    lora_sd["diffusion_model.blocks.1.diff_m"] = torch.randn(1, 6, CFG.dim)
    save_file(lora_sd, str(tmp_path / "l.safetensors"))
    lora = load_lora(tmp_path / "l.safetensors")
    model = our_model(base).to(torch.bfloat16)
    objects = {k: v for k, v in model.named_parameters()}
    copies = {k: v.detach().clone() for k, v in objects.items()}
    expected = {k: merge_weight(copies[k], p) for k, p in lora.resolve(build_index(
        {k: tuple(v.shape) for k, v in copies.items()}))[0].items() for p in [[(q, 1.0) for q in p]]}
    inp = make_inputs(CFG, frames=1, height=2, width=2)
    with apply_loras(model, lora, merge=merge) as h:
        assert sorted(h.merged) == sorted(expected) and len(expected) == len(modules) + 1
        for k, v in model.named_parameters():
            assert v.dtype == torch.bfloat16 and torch.equal(v, expected.get(k, copies[k])), k
            assert (v is objects[k]) == (merge == "inplace" or k not in expected), k
        if merge == "copy":  # the originals stay untouched while patched copies are in use
            assert all(torch.equal(v, copies[k]) for k, v in objects.items())
        with torch.no_grad():
            model(inp.x, inp.t, inp.context.bfloat16(), clip_fea=inp.clip_fea, y=inp.y)
    for k, v in model.named_parameters():
        assert v is objects[k] and torch.equal(v, copies[k]), k


def test_zero_and_partial_matches(base, tmp_path):
    model = our_model(base)
    flux = {f"diffusion_model.double_blocks.{i}.img_attn.qkv.lora_A.weight": torch.zeros(4, 8) for i in range(3)}
    flux.update({k.replace("lora_A", "lora_B"): torch.zeros(24, 4) for k in flux})
    save_file(flux, str(tmp_path / "flux.safetensors"))
    with pytest.raises(WanFileError, match=r"flux\.safetensors: 0 of 3 LoRA patches match .*Flux"):
        apply_loras(model, load_lora(tmp_path / "flux.safetensors"))

    small = write_pairs({"blocks.0.self_attn.q": (torch.zeros(1536, 4), torch.zeros(4, 1536), None)},
                        lambda m: f"diffusion_model.{m}", "lora_B.weight", "lora_A.weight")
    save_file(small, str(tmp_path / "small.safetensors"))
    with pytest.raises(WanFileError, match="shapes do not.*another Wan size"):
        apply_loras(model, load_lora(tmp_path / "small.safetensors"))

    sd = write_pairs(random_pairs(base, ["blocks.0.self_attn.q", "blocks.1.ffn.0"]),
                     lambda m: f"diffusion_model.{m}", "lora_B.weight", "lora_A.weight")
    sd.update(write_pairs({"blocks.7.self_attn.q": (torch.zeros(CFG.dim, 4), torch.zeros(4, CFG.dim), 4.0)},
                          lambda m: f"diffusion_model.{m}", "lora_B.weight", "lora_A.weight"))
    save_file(sd, str(tmp_path / "part.safetensors"))
    lora = load_lora(tmp_path / "part.safetensors")
    assert (lora.match(model).matched, lora.match(model).total) == (2, 3)
    with pytest.warns(UserWarning, match=r"2 of 3 LoRA patches .*blocks\.7\.self_attn\.q"):
        with apply_loras(model, lora) as h:
            with pytest.raises(WanInputError, match="already has LoRAs"):
                apply_loras(model, lora)
    assert h.reports[0].unmatched == ["diffusion_model.blocks.7.self_attn.q"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_loras(model, lora, warn=False).remove()  # removable, and re-appliable after removal


def test_non_lora_files_are_refused(base, tmp_path):
    save_file({k: v.contiguous() for k, v in base.items()}, str(tmp_path / "dit.safetensors"))
    with pytest.raises(WanFileError, match="dit.safetensors: is not a LoRA.*Wan DiT"):
        load_lora(tmp_path / "dit.safetensors")
    save_file({"foo": torch.randn(3), "bar.weight": torch.randn(2, 2)}, str(tmp_path / "rand.safetensors"))
    with pytest.raises(WanFileError, match="is not a LoRA.*foo"):
        load_lora(tmp_path / "rand.safetensors")
    good = write_pairs(random_pairs(base, ["blocks.0.self_attn.q"]), lambda m: m, "lora_B.weight",
                       "lora_A.weight")
    save_file(good, str(tmp_path / "good.safetensors"))
    raw = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WanFileError, match="cut.safetensors"):
        load_lora(tmp_path / "cut.safetensors")
    (tmp_path / "text.safetensors").write_text("not weights at all")
    with pytest.raises(WanFileError, match="text.safetensors"):
        load_lora(tmp_path / "text.safetensors")
    with pytest.raises(WanFileError, match="not found"):
        load_lora(tmp_path / "missing.safetensors")
    loha = {"diffusion_model.blocks.0.self_attn.q.hada_w1_a": torch.zeros(2, 2)}
    save_file(loha, str(tmp_path / "loha.safetensors"))
    with pytest.raises(WanFileError, match="LoHa"):
        load_lora(tmp_path / "loha.safetensors")
