"""``python -m wan generate --lora FILE:STRENGTH`` equals the nodes' run with that LoRA (Wan LoRA
Select -> Wan Model Loader -> Wan Sampler -> Wan VAE Decode, run in process from ComfyUI model
folders holding the same tiny files): the same sampled latent bit for bit, and the same frame in
the PNG the CLI writes as in the decoded IMAGE quantised to 8 bits as PNG stores it. Without the
LoRA the CLI's latent differs, so the comparison sees the LoRA."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from cli_runs import generate_latent
from refs import comfy, import_pack
from tiny_models import write_dit, write_lora, write_umt5, write_vae

PACK = "wan_pack_cli_lora_test"
W, H, STEPS, CFG, SEED, STRENGTH = 32, 32, 3, 3.0, 7, 0.7
PROMPT, NEGATIVE = "a red fox in the snow", "blurry"
FILES = {"diffusion_models": "tiny_t2v.safetensors", "text_encoders": "umt5.safetensors",
         "vae": "vae.safetensors", "loras": "lora.safetensors"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(2)
    d = tmp_path_factory.mktemp("models")
    write_dit(d / "diffusion_models" / FILES["diffusion_models"], "t2v_1_3b", "safetensors", seed=3)
    write_umt5(d / "text_encoders" / FILES["text_encoders"])
    write_vae(d / "vae" / FILES["vae"], "2.1")
    write_lora(d / "loras" / FILES["loras"], "t2v_1_3b", seed=21)
    return d


@pytest.fixture
def folders(models, monkeypatch):
    """ComfyUI's model folders pointed at ``models`` for this test only."""
    folder_paths = comfy("folder_paths")
    for folder in FILES:
        exts = folder_paths.folder_names_and_paths[folder][1]
        monkeypatch.setitem(folder_paths.folder_names_and_paths, folder, ([str(models / folder)], exts))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    return models


def cli_run(models, out, monkeypatch, *extra) -> torch.Tensor:
    """The CLI's sampled latent (seen on its way to the VAE); the frame goes to ``out``."""
    argv = ["--dit", str(models / "diffusion_models" / FILES["diffusion_models"]),
            "--text-encoder", str(models / "text_encoders" / FILES["text_encoders"]),
            "--vae", str(models / "vae" / FILES["vae"]), "--prompt", PROMPT, "--negative-prompt", NEGATIVE,
            "--width", str(W), "--height", str(H), "--frames", "1", "--steps", str(STEPS), "--cfg", str(CFG),
            "--seed", str(SEED), "--dtype", "bf16", "--device", "cpu", "--quiet", "--out", str(out), *extra]
    return generate_latent(argv, monkeypatch)


def node_run() -> tuple[torch.Tensor, torch.Tensor]:
    """(latent, IMAGE) of the node graph with the LoRA, on ComfyUI's compute device (the CPU here)."""
    import_pack(PACK)
    nodes = {n: importlib.import_module(f"{PACK}.nodes.{n}") for n in ("loaders", "lora", "encoders", "sampler", "vae")}
    lora = nodes["lora"].WanLoraSelect().select(FILES["loras"], STRENGTH)[0]
    model = nodes["loaders"].WanModelLoader().load(FILES["diffusion_models"], "bf16", "disabled", "main_device",
                                                   "sdpa", lora=lora)[0]
    te = nodes["loaders"].WanTextEncoderLoader().load(FILES["text_encoders"], "bf16", "main_device")[0]
    text = nodes["encoders"].WanTextEncode().encode(te, PROMPT, NEGATIVE)[0]
    embeds = nodes["encoders"].WanEmptyEmbeds().make(W, H, 1)[0]
    latent = nodes["sampler"].WanSampler().sample(model, text, embeds, STEPS, CFG, 5.0, SEED, "unipc", 1.0)[0]
    vae = nodes["loaders"].WanVAELoader().load(FILES["vae"], "fp32")[0]
    image = nodes["vae"].WanVAEDecode().decode(vae, latent, False, 256, 64)[0]
    return latent["samples"], image


def test_cli_lora_equals_the_node_run(folders, tmp_path, monkeypatch):
    # the CLI's default shift for text-to-video with one DiT is 5, as passed to the node above
    cli_latent = cli_run(folders, tmp_path / "lora.png", monkeypatch, "--lora",
                         f"{folders / 'loras' / FILES['loras']}:{STRENGTH}")
    plain = cli_run(folders, tmp_path / "plain.png", monkeypatch)
    node_latent, image = node_run()
    assert torch.equal(cli_latent, node_latent)
    assert not torch.equal(cli_latent, plain)
    png = np.asarray(Image.open(tmp_path / "lora.png").convert("RGB"))
    node_png = (image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    assert png.shape == (H, W, 3) and np.array_equal(png, node_png)
