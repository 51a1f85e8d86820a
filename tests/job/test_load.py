"""The one loading path (wan.job.load): every model file format we read, each LoadOptions option, and
the refusals.

References: the DiT against ComfyUI's WanModel holding the file's tensors as read by safetensors /
dequantized by gguf-py; the text encoder against transformers' UMT5EncoderModel; the VAEs against
ComfyUI's Wan VAEs; CLIP vision against transformers' CLIPVisionModelWithProjection. Tolerance
(fp32, CPU): max|ours - ref| <= 1e-5 * max|ref| + 1e-6 (dit_fixtures.check).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch._dynamo
from safetensors.torch import load_file, save_file

from dit_fixtures import check, comfy_model, make_inputs
from refs import comfy
from tiny_models import (
    write_clip_vision, write_dit, write_umt5, write_umt5_gguf, write_vae, dit_state, _T5_GGUF_NAMES,
)
from wan.errors import WanFileError, WanInputError
from wan.install.tiny import UMT5_SIZE, dit_config
from wan.job import load
from wan.job.options import LoadOptions
from wan.job.pipelines import load_components
from wan.models.dit.attention import sdpa
from wan.runtime.blockswap import BlockSwapArgs
from wan.runtime.compile import TorchCompileArgs
from wan.weights.packed import PackedLinear

gguf = pytest.importorskip("gguf")
torch.set_num_threads(2)

FP32 = LoadOptions(dtype=torch.float32, device="cpu")


# ---- files and references ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    out = {
        "bf16": write_dit(d / "t2v_bf16.safetensors", "t2v_1_3b", "safetensors"),
        "fp8": write_dit(d / "i2v_fp8_e4m3fn.safetensors", "i2v_14b", "fp8", seed=1),
        "gguf": write_dit(d / "t2v_Q8_0.gguf", "t2v_1_3b", "gguf", seed=2),
        "umt5": write_umt5(d / "umt5.safetensors"),
        "umt5_gguf": write_umt5_gguf(d / "umt5-Q8_0.gguf"),
        "vae21": write_vae(d / "vae21.safetensors", "2.1"),
        "vae22": write_vae(d / "vae22.safetensors", "2.2"),
        "clip": write_clip_vision(d / "clip_vision_h.safetensors"),
    }
    out["fp8_scaled"] = _write_scaled_fp8(d / "t2v_fp8_scaled.safetensors")
    return out


def _fp8_round_trip(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fp8 e4m3fn values, fp32 scale) with one per-tensor scale amax / 448, as ComfyUI's scaled fp8."""
    scale = w.float().abs().max() / 448.0
    return (w.float() / scale).to(torch.float8_e4m3fn), scale


def _block_linear(name: str, t: torch.Tensor) -> bool:
    return name.startswith("blocks.") and name.endswith(".weight") and t.ndim == 2


def _write_scaled_fp8(path: Path) -> Path:
    """ComfyUI's scaled fp8 layout: fp8 block weights, a float32 ``scale_weight`` beside each and the
    ``scaled_fp8`` marker."""
    sd = {}
    for k, v in dit_state("t2v_1_3b", seed=3).items():
        if _block_linear(k, v):
            sd[k], sd[k[: -len("weight")] + "scale_weight"] = _fp8_round_trip(v)
        else:
            sd[k] = v.to(torch.bfloat16)
    sd["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    save_file(sd, str(path))
    return path


def _plain_from_safetensors(path) -> dict:
    """The file's tensors in fp32 as safetensors reads them, scaled fp8 folded in by hand."""
    raw = load_file(str(path))
    out = {}
    for k, v in raw.items():
        if k == "scaled_fp8" or k.endswith("scale_weight"):
            continue
        scale = raw.get(k[: -len("weight")] + "scale_weight")
        out[k] = v.float() * scale if scale is not None else v.float()
    return out


def _plain_from_gguf(path) -> dict:
    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        shape = tuple(int(v) for v in reversed(t.shape))
        out[t.name] = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float().reshape(shape)
    return out


def _run_dit(model, cfg, inp):
    with torch.no_grad():
        return model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y)


def _run_comfy(model, inp):
    x = inp.x if inp.y is None else torch.cat([inp.x, inp.y], dim=1)
    with torch.no_grad():
        return model(x, inp.t, inp.context_padded, clip_fea=inp.clip_fea)


# ---- the DiT in every format ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt,variant", [("bf16", "t2v_1_3b"), ("fp8", "i2v_14b"), ("fp8_scaled", "t2v_1_3b"),
                                         ("gguf", "t2v_1_3b")])
def test_dit_matches_comfyui_on_the_files_tensors(files, fmt, variant):
    cfg = dit_config(variant)
    plain = _plain_from_gguf(files[fmt]) if fmt == "gguf" else _plain_from_safetensors(files[fmt])
    ours = load.load_dit(files[fmt], FP32)
    assert ours.cfg.model_type == cfg.model_type and ours.cfg.num_layers == cfg.num_layers
    if fmt != "bf16":  # quantized weights stay packed; the plain file has none
        assert isinstance(ours.blocks[0].self_attn.q, PackedLinear)
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    check(_run_dit(ours, cfg, inp), _run_comfy(comfy_model(cfg, plain), inp))


# ---- options -------------------------------------------------------------------------------------

def test_fp8_on_load_stores_block_weights_as_scaled_fp8(files):
    cfg = dit_config("t2v_1_3b")
    plain = _plain_from_safetensors(files["bf16"])
    ours = load.load_dit(files["bf16"], LoadOptions(dtype=torch.float32, device="cpu", quantization="fp8_e4m3fn"))
    packed = {f"{n}.weight" for n, m in ours.named_modules() if isinstance(m, PackedLinear)}
    assert packed == {k for k, v in plain.items() if _block_linear(k, v)}
    assert {m.qtype for m in ours.modules() if isinstance(m, PackedLinear)} == {"fp8_e4m3fn"}
    expected = {k: (lambda q, s: q.float() * s)(*_fp8_round_trip(v)) if k in packed else v for k, v in plain.items()}
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    check(_run_dit(ours, cfg, inp), _run_comfy(comfy_model(cfg, expected), inp))


def test_gguf_keeps_its_own_quantization(files):
    cfg = dit_config("t2v_1_3b")
    asked = load.load_dit(files["gguf"], LoadOptions(dtype=torch.float32, device="cpu", quantization="fp8_e4m3fn"))
    assert {m.qtype for m in asked.modules() if isinstance(m, PackedLinear)} == {"Q8_0"}
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    assert torch.equal(_run_dit(asked, cfg, inp), _run_dit(load.load_dit(files["gguf"], FP32), cfg, inp))


def test_format_is_read_from_the_content_not_the_name(files, tmp_path):
    renamed = tmp_path / "really_gguf.safetensors"
    renamed.write_bytes(files["gguf"].read_bytes())
    model = load.load_dit(renamed, FP32)
    assert {m.qtype for m in model.modules() if isinstance(m, PackedLinear)} == {"Q8_0"}
    text = tmp_path / "umt5.gguf"
    text.write_bytes(files["umt5"].read_bytes())
    assert load.load_text_encoder(text, FP32).model.token_embedding.weight.dtype == torch.float32


def test_fp8_fast_needs_an_fp8_gpu():
    with pytest.raises(WanInputError, match="fp8_e4m3fn_fast needs an NVIDIA GPU"):
        load.build_dit(dit_state("t2v_1_3b"), LoadOptions(dtype=torch.float32, device="cpu",
                                                          quantization="fp8_e4m3fn_fast"))


def test_attention_mode_is_set_and_checked(files):
    model = load.load_dit(files["bf16"], FP32)
    kernels = {m.kernel for m in model.modules() if hasattr(m, "kernel")}
    # the default, auto: one kernel for the model, resolved at its first call (sdpa on the CPU)
    assert len(kernels) == 1 and type(kernels.pop()).__name__ == "AutoKernel"
    model = load.load_dit(files["bf16"], LoadOptions(dtype=torch.float32, device="cpu", attention="sdpa"))
    assert {m.kernel for m in model.modules() if hasattr(m, "kernel")} == {sdpa}
    with pytest.raises(WanInputError, match="unknown attention_mode 'fast'"):
        load.load_dit(files["bf16"], LoadOptions(dtype=torch.float32, device="cpu", attention="fast"))
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(WanInputError, match="needs the flash-attn package, which is not installed"):
            load.load_dit(files["bf16"], LoadOptions(dtype=torch.float32, device="cpu", attention="flash_attn"))


def test_block_swap_and_compile_are_applied(files):
    cfg = dit_config("i2v_14b")
    inp = make_inputs(cfg, frames=2, height=4, width=4)
    plain = _run_dit(load.load_dit(files["fp8"], FP32), cfg, inp)

    swap = BlockSwapArgs(1, offload_embeddings=True)
    swapped = load.load_dit(files["fp8"], LoadOptions(dtype=torch.float32, device="cpu", block_swap=swap))
    swapper = swapped._wan_block_swapper
    # on the CPU the device is the offload device, so the swapper is installed but streams nothing
    assert (swapper.device, swapper.offload_device, swapper.prefetch) == (torch.device("cpu"),) * 2 + (True,)
    assert torch.equal(_run_dit(swapped, cfg, inp), plain)

    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    for backend in ("eager", counting_backend):
        compiled = load.load_dit(files["fp8"], LoadOptions(dtype=torch.float32, device="cpu",
                                                           compile=TorchCompileArgs(backend=backend)))
        assert all(b._compiled_call_impl is not None for b in compiled.blocks)  # nn.Module.compile
        check(_run_dit(compiled, cfg, inp), plain)
    assert graphs  # the blocks really ran through torch.compile


def test_placement_follows_block_swap():
    swap = LoadOptions(device="cuda", offload_device="cpu", block_swap=BlockSwapArgs(2))
    assert swap.build_device == torch.device("cpu") and swap.compute_device == torch.device("cuda")
    assert LoadOptions(device="cuda", block_swap=BlockSwapArgs(0)).build_device == torch.device("cuda")
    assert LoadOptions(device="cpu").compute_device == torch.device("cpu")


def test_options_are_a_cache_key():
    a = LoadOptions(dtype=torch.float16, device="cpu", block_swap=BlockSwapArgs(3), compile=TorchCompileArgs())
    b = LoadOptions(dtype=torch.float16, device="cpu", block_swap=BlockSwapArgs(3), compile=TorchCompileArgs())
    assert a == b and hash(a) == hash(b) and len({a, b, LoadOptions(dtype=torch.float16, device="cpu")}) == 2
    with pytest.raises(WanInputError, match="quantization 'int4'"):
        LoadOptions(quantization="int4")


# ---- text encoder, VAE, CLIP vision --------------------------------------------------------------

def _hf_umt5(sd: dict):
    from transformers import UMT5Config, UMT5EncoderModel

    s = UMT5_SIZE
    cfg = UMT5Config(vocab_size=s["vocab"], d_model=s["d_model"], d_kv=s["d_kv"], num_heads=s["heads"],
                     d_ff=s["d_ff"], num_layers=s["layers"], relative_attention_num_buckets=s["buckets"],
                     feed_forward_proj="gated-gelu", dropout_rate=0.0, attn_implementation="eager")
    model = UMT5EncoderModel(cfg).eval()
    missing, unexpected = model.load_state_dict({k: v for k, v in sd.items() if k != "spiece_model"}, strict=False)
    assert set(missing) <= {"encoder.embed_tokens.weight"} and not unexpected, (missing, unexpected)
    return model


def _hf_names_of_gguf(sd: dict) -> dict:
    out = {}
    for name, v in sd.items():
        for hf, cpp in _T5_GGUF_NAMES:
            name = name.replace(cpp, hf)
        out[name] = v
    return out


@pytest.mark.parametrize("fmt", ["umt5", "umt5_gguf"])
def test_text_encoder_matches_transformers(files, fmt):
    if fmt == "umt5":
        sd = _plain_from_safetensors(files[fmt])
    else:
        sd = _hf_names_of_gguf(_plain_from_gguf(files[fmt]))
    ours = load.load_text_encoder(files[fmt], FP32)
    ids, mask = ours.tokenize(["a cat walks on a wall"])
    assert int(mask.sum()) > 3 and int(ids.max()) < UMT5_SIZE["vocab"]
    n = int(mask.sum())
    with torch.no_grad():
        out = ours.model(ids[:, :n], mask[:, :n])
        ref = _hf_umt5(sd)(input_ids=ids[:, :n], attention_mask=mask[:, :n]).last_hidden_state
    check(out, ref)


def test_gguf_and_safetensors_text_encoders_tokenize_alike(files):
    prompts = ["a cat walks on a wall", "two dogs, 3 birds!"]
    a = load.load_text_encoder(files["umt5"], FP32).tokenize(prompts)
    b = load.load_text_encoder(files["umt5_gguf"], FP32).tokenize(prompts)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_vae_matches_comfyui(files, version):
    sd = _plain_from_safetensors(files["vae21" if version == "2.1" else "vae22"])
    ours = load.load_vae(files["vae21" if version == "2.1" else "vae22"], FP32)
    if version == "2.1":
        ref = comfy("comfy.ldm.wan.vae").WanVAE(dim=8, z_dim=16, num_res_blocks=2,
                                                 temperal_downsample=[False, True, True])
    else:
        ref = comfy("comfy.ldm.wan.vae2_2").WanVAE(dim=8, dec_dim=16, z_dim=48, num_res_blocks=2,
                                                    temperal_downsample=[False, True, True])
    ref.load_state_dict(sd, strict=True)
    z = torch.randn(1, ours.z_dim, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        check(ours.decode(z, clamp=False), ref.eval().decode(z))


def test_clip_vision_matches_transformers(files):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    sd = _plain_from_safetensors(files["clip"])
    ref = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1280, num_hidden_layers=2, num_attention_heads=16, intermediate_size=64, patch_size=14,
        image_size=28, projection_dim=32, hidden_act="gelu", layer_norm_eps=1e-5,
        attn_implementation="eager")).eval()
    ref.load_state_dict(sd, strict=True)
    ours = load.load_clip_vision(files["clip"], FP32)
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        check(ours(pixels), ref(pixel_values=pixels, output_hidden_states=True).hidden_states[-2])


# ---- wrong files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("loader,wrong", [
    ("load_dit", "vae21"), ("load_dit", "umt5_gguf"), ("load_dit", "clip"),
    ("load_text_encoder", "clip"), ("load_text_encoder", "gguf"), ("load_text_encoder", "bf16"),
    ("load_vae", "bf16"), ("load_vae", "umt5"), ("load_vae", "gguf"),
    ("load_clip_vision", "umt5"), ("load_clip_vision", "vae21"),
])
def test_a_file_of_another_role_is_refused_by_name(files, loader, wrong):
    with pytest.raises(WanFileError, match=rf"^{files[wrong].name}: "):
        getattr(load, loader)(files[wrong], FP32)


def test_truncated_and_pickled_files_are_refused_by_name(files, tmp_path):
    cut = tmp_path / "cut.safetensors"
    data = files["vae21"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WanFileError, match="^cut.safetensors: "):
        load.load_vae(cut, FP32)
    # The official releases ship Wan2.1_VAE.pth: pickles are never unpickled, the message says so.
    pth = tmp_path / "Wan2.1_VAE.pth"
    torch.save(load_file(str(files["vae21"])), pth)
    with pytest.raises(WanFileError, match="^Wan2.1_VAE.pth: .*pickle.*safetensors"):
        load.load_vae(pth, FP32)


# ---- load_components -----------------------------------------------------------------------------

def test_load_components_takes_load_options(files):
    options = LoadOptions(dtype=torch.float32, device="cpu", block_swap=BlockSwapArgs(1),
                          compile=TorchCompileArgs(backend="eager"))
    parts = load_components(dit=files["bf16"], text_encoder=files["umt5_gguf"], vae=files["vae21"],
                            vae_dtype=torch.bfloat16, options=options)
    assert parts["dit"]._wan_block_swapper is not None  # installed (inactive: the CPU is both devices)
    assert all(b._compiled_call_impl is not None for b in parts["dit"].blocks)
    assert parts["dit"].blocks[0].self_attn.q.weight.dtype == torch.float32
    assert parts["text_encoder"].model.token_embedding.weight.dtype == torch.float32
    assert next(parts["vae"].parameters()).dtype == torch.bfloat16
    with pytest.raises(WanInputError, match="inside options"):
        load_components(dit=files["bf16"], dtype=torch.float16, options=options)
    plain = load_components(dit=files["bf16"], dtype=torch.float16, device="cpu")
    assert plain["dit"].blocks[0].self_attn.q.weight.dtype == torch.float16
    assert not hasattr(plain["dit"], "_wan_block_swapper")
