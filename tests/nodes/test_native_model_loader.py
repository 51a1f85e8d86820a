"""The MODEL loader's seam, in-process on ComfyUI 0.3.75 (CPU): our packed weights inside ComfyUI's
own Wan model.

A GGUF Q8_0 DiT loaded through ``_comfy_packed.load_diffusion_model`` must compute what ComfyUI's
own loader (``comfy.sd.load_diffusion_model``, UNETLoader's function) computes from an fp32
safetensors file holding exactly the weights gguf-py dequantizes from the same GGUF; a LoRA applied by
ComfyUI's own ``load_lora_for_models`` (LoraLoader's function) must give the same result on both,
while every packed Linear weight stays packed (uint8) through ComfyUI's load and patch.
"""

from __future__ import annotations

import pytest
import torch
from native_fixtures import write_dequantized_twin
from refs import comfy, pack_module
from safetensors.torch import load_file, save_file
from tiny_models import dit_config, write_dit, write_lora

TOLERANCE = 1e-5  # relative to max|reference|: the same fp32 math on the same weight values


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("native")
    packed = write_dit(d / "t2v_Q8_0.gguf", "t2v_1_3b", "gguf", seed=4)
    dense = write_dequantized_twin(packed, d / "t2v_dequantized_f32.safetensors")  # gguf-py's values
    lora = write_lora(d / "lora.safetensors", variant="t2v_1_3b", seed=12)
    return {"gguf": packed, "dense": dense, "lora": lora}


@pytest.fixture(scope="module")
def seam():
    return pack_module("nodes._comfy_packed")


def _inputs(cfg):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, cfg.in_dim, 2, 4, 4, generator=g)
    context = torch.randn(1, 7, cfg.text_dim, generator=g)
    return x, torch.tensor([700.0]), context


def _forward(patcher, inputs):
    mm = comfy("comfy.model_management")
    mm.load_models_gpu([patcher], force_full_load=True)
    with torch.no_grad():
        return patcher.model.diffusion_model(*inputs).float()


def _close(a, b):
    err = (a - b).abs().max().item() / b.abs().max().item()
    print(f"max|ours - reference| / max|reference| = {err:.2e}")
    assert err < TOLERANCE, err


def _packed_weights(model) -> dict:
    return {n: m.weight for n, m in model.diffusion_model.named_modules() if getattr(m, "packed", None)}


def test_gguf_in_comfyui_model_equals_comfyui_loader_on_dequantized_weights(files, seam):
    sd = comfy("comfy.sd")
    cfg = dit_config("t2v_1_3b")
    ours = seam.load_diffusion_model(files["gguf"], dtype=torch.float32)
    ref = sd.load_diffusion_model(str(files["dense"]), model_options={"dtype": torch.float32})
    assert type(ours.model.diffusion_model) is type(ref.model.diffusion_model)  # ComfyUI's WanModel
    packed = _packed_weights(ours.model)
    assert packed and all(w.dtype == torch.uint8 for w in packed.values())
    # every block Linear is packed: the GGUF writer quantized them all to Q8_0
    assert len(packed) == sum(1 for k, v in load_file(str(files["dense"])).items()
                              if k.startswith("blocks.") and v.ndim == 2)
    # ComfyUI sizes the model from what it holds: the packed bytes, not a dequantized copy
    assert ours.model_size() < ref.model_size()
    inputs = _inputs(cfg)
    _close(_forward(ours, inputs), _forward(ref, inputs))


def test_comfyui_lora_patches_packed_weights_without_unpacking(files, seam):
    sd = comfy("comfy.sd")
    utils = comfy("comfy.utils")
    cfg = dit_config("t2v_1_3b")
    lora = utils.load_torch_file(str(files["lora"]), safe_load=True)
    base = seam.load_diffusion_model(files["gguf"], dtype=torch.float32)
    ref_base = sd.load_diffusion_model(str(files["dense"]), model_options={"dtype": torch.float32})
    ours, _ = sd.load_lora_for_models(base, None, lora, 0.8, 0)
    ref, _ = sd.load_lora_for_models(ref_base, None, lora, 0.8, 0)
    assert type(ours) is type(base) and len(ours.patches) == len(ref.patches) > 0
    inputs = _inputs(cfg)
    plain = _forward(ref_base, inputs)
    with_lora = _forward(ref, inputs)
    assert (with_lora - plain).abs().max() > 1e-3 * plain.abs().max()  # the LoRA changes the output
    _close(_forward(ours, inputs), with_lora)
    assert all(w.dtype == torch.uint8 for w in _packed_weights(ours.model).values())
    # back to the base patcher (same ComfyUI model): the LoRA must be gone
    _close(_forward(base, inputs), plain)
    _close(_forward(ours, inputs), with_lora)


# ---- fp8 scaled: ComfyUI's own reading of the same file is the reference ------------------------

def test_scaled_fp8_file_equals_comfyui_reading_it_itself(tmp_path, seam, monkeypatch):
    """Comfy-Org's layout (every Linear weight fp8 with a ``scale_weight`` beside it, the
    ``scaled_fp8`` marker; ComfyUI's scaled-fp8 ops make every Linear fp8, so a file with plain ones
    is not what it reads): UNETLoader's function on the same file, with ComfyUI's own ops."""
    from tiny_models import dit_state

    state = dit_state("t2v_1_3b", seed=6)
    sd = {}
    for k, v in state.items():
        if k.endswith(".weight") and v.ndim == 2:
            scale = v.abs().max() / 448.0
            sd[k], sd[k[: -len("weight")] + "scale_weight"] = (v / scale).to(torch.float8_e4m3fn), scale.float()
        elif k.endswith(".bias") and state.get(k[: -len("bias")] + "weight", v).ndim == 2:
            # ComfyUI 0.3.75's scaled-fp8 Linear stores its bias in fp8 too (ours keeps the file's
            # bias): biases that fp8 holds exactly make that rounding a no-op, so the rest is compared
            sd[k] = v.to(torch.float8_e4m3fn).float()
        else:
            sd[k] = v
    sd["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    path = tmp_path / "t2v_fp8_scaled.safetensors"
    save_file(sd, str(path))
    ours = seam.load_diffusion_model(path, dtype=torch.float32)
    packed = _packed_weights(ours.model)
    assert packed and all(w.dtype == torch.uint8 for w in packed.values())
    # The 0-element marker asks ComfyUI for fp8 matmuls where the device can (it claims the CPU can):
    # the input is then rounded to fp8 too, a speed option (ours: the Wan loader's "_fast"). The
    # reference is ComfyUI's reading on a device without fp8 compute: weight = fp8 value * scale.
    monkeypatch.setattr(comfy("comfy.model_management"), "supports_fp8_compute", lambda *a, **k: False)
    ref = comfy("comfy.sd").load_diffusion_model(str(path), model_options={"dtype": torch.float32})
    inputs = _inputs(dit_config("t2v_1_3b"))
    _close(_forward(ours, inputs), _forward(ref, inputs))


# ---- ComfyUI's partial loading (lowvram) over packed weights, with a LoRA ------------------------

def test_partial_load_and_unload_keep_the_lora_once(files, seam):
    """ComfyUI's lowvram load (weights left on the offload device, cast per call, LoRA as a
    LowVramPatch) and its partial unload (which appends its own patch for a weight we already
    patch) give the fully loaded result: each patch runs once."""
    sd = comfy("comfy.sd")
    utils = comfy("comfy.utils")
    lora = utils.load_torch_file(str(files["lora"]), safe_load=True)
    inputs = _inputs(dit_config("t2v_1_3b"))
    base = seam.load_diffusion_model(files["gguf"], dtype=torch.float32)
    ours, _ = sd.load_lora_for_models(base, None, lora, 0.8, 0)
    full = _forward(ours, inputs)
    comfy("comfy.model_management").unload_all_models()

    ours.patch_model(device_to=torch.device("cpu"), lowvram_model_memory=1)  # almost nothing fits
    assert ours.model.model_lowvram
    with torch.no_grad():
        _close(ours.model.diffusion_model(*inputs).float(), full)
    ours.unpatch_model(torch.device("cpu"))

    ours.patch_model(device_to=torch.device("cpu"), lowvram_model_memory=0)  # full load ...
    ours.partially_unload(torch.device("cpu"), memory_to_free=ours.model_size())  # ... then give it all back
    with torch.no_grad():
        _close(ours.model.diffusion_model(*inputs).float(), full)
    ours.unpatch_model(torch.device("cpu"))
    with torch.no_grad():  # unpatched: the base model again
        _close(ours.model.diffusion_model(*inputs).float(), _forward(base, inputs))


# ---- bad files: refused by name before ComfyUI builds anything -----------------------------------

def _bad_files(d):
    from gguf_samples import write_sample
    from tiny_models import write_sd15_checkpoint, write_umt5, write_vae, write_wrong_arch_gguf

    truncated = write_dit(d / "truncated.gguf", "t2v_1_3b", "gguf", seed=1)
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    lying = write_sample(d / "lying_count.gguf")
    raw = bytearray(lying.read_bytes())
    raw[8:16] = (2**40).to_bytes(8, "little")  # tensor count
    lying.write_bytes(bytes(raw))
    return {
        "flux.gguf": (write_wrong_arch_gguf(d / "flux.gguf", "flux"), "flux"),
        "llama.gguf": (write_wrong_arch_gguf(d / "llama.gguf", "llama"), "llama"),
        "sd15.safetensors": (write_sd15_checkpoint(d / "sd15.safetensors"), "not a Wan diffusion model"),
        "vae.safetensors": (write_vae(d / "vae.safetensors", "2.1"), "not a Wan diffusion model"),
        "lora.safetensors": (write_lora(d / "lora.safetensors", variant="t2v_1_3b"), "not a Wan diffusion model"),
        "umt5.safetensors": (write_umt5(d / "umt5.safetensors"), "not a Wan diffusion model"),
        "truncated.gguf": (truncated, "truncated"),
        "lying_count.gguf": (lying, "tensor count"),
    }


def test_bad_files_are_refused_naming_the_file_before_comfyui_builds(tmp_path, seam, monkeypatch):
    WanFileError = pack_module("wan.errors").WanFileError  # the pack's own copy of the class

    called = []
    monkeypatch.setattr(comfy("comfy.sd"), "load_diffusion_model_state_dict", lambda *a, **k: called.append(1))
    for name, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(WanFileError) as info:
            seam.load_diffusion_model(path)
        msg = str(info.value)
        assert name in msg and words.lower() in msg.lower(), msg
    assert called == []
