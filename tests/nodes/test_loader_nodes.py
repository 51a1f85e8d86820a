"""The loader nodes in-process (the pack imported as ComfyUI imports it, ComfyUI's folder_paths and
model management from the reference copy, on the CPU): each node only builds a LoadOptions and hands
the file to wan.job.load, so its model equals the library's for the same file and options; the cache
is keyed by file and options."""

from __future__ import annotations

import sys

import pytest
import torch

from dit_fixtures import make_inputs
from refs import comfy, import_pack
from tiny_models import write_set
from wan.install.tiny import dit_config
from wan.job import load
from wan.job.options import LoadOptions
from wan.runtime.blockswap import BlockSwapArgs

PACK = "wan_pack_loader_test"
ROLES = ("t2v_gguf", "ti2v_5b", "umt5_gguf", "clip_vision", "vae21")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("comfy_models")
    write_set(d, only=ROLES)
    return d


@pytest.fixture
def pack(models_dir, monkeypatch):
    folder_paths = comfy("folder_paths")
    import_pack(PACK)
    folders = {"diffusion_models": ["diffusion_models", "unet"], "text_encoders": ["text_encoders"],
               "clip_vision": ["clip_vision"], "vae": ["vae"]}
    for name, subdirs in folders.items():
        monkeypatch.setitem(folder_paths.folder_names_and_paths, name,
                            ([str(models_dir / s) for s in subdirs], {".safetensors", ".gguf"}))
    loaders = sys.modules[f"{PACK}.nodes.loaders"]
    monkeypatch.setattr(loaders, "MODEL_CACHE", sys.modules[f"{PACK}.nodes._common"].ModelCache())  # a fresh cache each test
    return loaders


def _run(model, variant):
    inp = make_inputs(dit_config(variant), frames=1 if variant == "ti2v_5b" else 2, height=4, width=4)
    with torch.no_grad():
        return model(inp.x, inp.t, inp.context, clip_fea=inp.clip_fea, y=inp.y)


@pytest.mark.parametrize("role,variant", [("t2v_gguf", "t2v_1_3b"), ("ti2v_5b", "ti2v_5b")])
def test_model_loader_gives_the_librarys_model(pack, models_dir, role, variant):
    from tiny_models import NAMES

    folder, name = NAMES[role]
    (model,) = pack.WanModelLoader().load(name, "fp32", "disabled", "main_device", "sdpa")
    ours = load.load_dit(models_dir / folder / name, LoadOptions(dtype=torch.float32, device="cpu"))
    assert torch.equal(_run(model.dit, variant), _run(ours, variant))
    assert not model.block_swap and model.loras == ()


def test_model_cache_is_keyed_by_file_and_options(pack):
    from tiny_models import NAMES

    name = NAMES["ti2v_5b"][1]
    node = pack.WanModelLoader()
    first = node.load(name, "fp32", "disabled", "main_device", "sdpa")[0].dit
    assert node.load(name, "fp32", "disabled", "main_device", "sdpa")[0].dit is first
    fp8 = node.load(name, "fp32", "fp8_e4m3fn", "main_device", "sdpa")[0].dit
    assert fp8 is not first
    assert {type(m).__name__ for m in fp8.blocks[0].modules()} >= {"PackedLinear"}
    swapped = node.load(name, "fp32", "disabled", "main_device", "sdpa", block_swap_args=BlockSwapArgs(1))[0]
    assert swapped.block_swap and swapped.dit is not first
    assert swapped.dit._wan_block_swapper is not None  # installed; streams nothing where the CPU is both devices


def test_model_loader_refuses_unknown_choices(pack):
    from tiny_models import NAMES

    name = NAMES["ti2v_5b"][1]
    with pytest.raises(ValueError, match="quantization 'int4' is not one of"):
        pack.WanModelLoader().load(name, "fp32", "int4", "main_device", "sdpa")
    with pytest.raises(ValueError, match="precision 'fp64' is not one of"):
        pack.WanModelLoader().load(name, "fp64", "disabled", "main_device", "sdpa")


def test_other_loaders_read_through_the_library(pack, models_dir):
    from tiny_models import NAMES

    (text,) = pack.WanTextEncoderLoader().load(NAMES["umt5_gguf"][1], "fp32", "offload_device")
    ref = load.load_text_encoder(models_dir.joinpath(*NAMES["umt5_gguf"]), LoadOptions(dtype=torch.float32, device="cpu"))
    prompts = ["a cat walks on a wall"]
    assert torch.equal(text.encode(prompts)[0], ref.encode(prompts)[0])

    (vae,) = pack.WanVAELoader().load(NAMES["vae21"][1], "bf16")
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}
    (clip,) = pack.WanCLIPVisionLoader().load(NAMES["clip_vision"][1], "fp16")
    assert {p.dtype for p in clip.parameters()} == {torch.float16}
    assert pack.WanVAELoader().load(NAMES["vae21"][1], "bf16")[0] is vae
