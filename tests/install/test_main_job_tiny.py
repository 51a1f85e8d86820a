"""wan.install.tiny writes files that ComfyUI's own loaders take for the real thing (its DiT detection, its
VAE, its UMT5 tokenizer from the embedded ``spiece_model``), under the catalogue's names."""

from __future__ import annotations

import pytest
import torch

from refs import comfy
from wan.install.catalog import load_catalog
from wan.errors import WanFileError
from wan.models.text.tokenizer import WanTokenizer
from wan.install.tiny import DIT_SIZE, is_tiny, spiece_model, write_default_set


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny_base")
    return base, write_default_set(base)


def test_default_set_names_and_places(tiny_set):
    base, paths = tiny_set
    catalog = load_catalog()
    wf = catalog.workflows[catalog.default]
    assert set(paths) == set(wf.slots)
    for slot, name in wf.slots.items():
        f = catalog.file(name)
        assert paths[slot] == base / "models" / f.folder / f.filename
        assert paths[slot].is_file() and is_tiny(paths[slot])
    # A second call keeps the tiny files; a real file under a catalogue name is never overwritten.
    assert write_default_set(base) == paths
    real = base / "models" / "vae" / catalog.file(wf.slots["vae"]).filename
    real.write_bytes(b"not written by wan.install.tiny")
    with pytest.raises(WanFileError, match="refusing to overwrite"):
        write_default_set(base)
    real.unlink()
    write_default_set(base)


def test_comfyui_detects_the_dit_as_wan_t2v(tiny_set):
    _, paths = tiny_set
    sd_mod = comfy("comfy.sd")
    utils = comfy("comfy.utils")
    state = utils.load_torch_file(str(paths["dit"]))
    patcher = sd_mod.load_diffusion_model_state_dict(state)
    assert patcher is not None, "ComfyUI did not recognise the tiny DiT"
    config = patcher.model.model_config.unet_config
    assert config["image_model"] == "wan2.1" and config["model_type"] == "t2v"
    assert (config["dim"], config["num_layers"], config["ffn_dim"]) == (
        DIT_SIZE["dim"], DIT_SIZE["num_layers"], DIT_SIZE["ffn_dim"])


def test_comfyui_reads_the_vae_and_decodes(tiny_set):
    _, paths = tiny_set
    sd_mod = comfy("comfy.sd")
    utils = comfy("comfy.utils")
    vae = sd_mod.VAE(sd=utils.load_torch_file(str(paths["vae"])))
    assert vae.latent_channels == 16
    frames = vae.decode(torch.randn(1, 16, 2, 4, 4))  # 2 latent frames -> 1 + 4 video frames
    assert frames.shape[-4:] == (5, 32, 32, 3) and torch.isfinite(frames).all()


def test_comfyui_tokenizes_the_prompt_as_we_do(tiny_set):
    _, paths = tiny_set
    # ComfyUI's UMT5 model class has fixed XXL shapes, so only its tokenizer reads a tiny file.
    utils = comfy("comfy.utils")
    wan_te = comfy("comfy.text_encoders.wan")
    state = utils.load_torch_file(str(paths["text_encoder"]))
    tokenizer = wan_te.UMT5XXlTokenizer(tokenizer_data={"spiece_model": state["spiece_model"]})
    prompt = "a bonfire on a beach at night, sparks rising into the starry sky"
    theirs = [t[0] for t in tokenizer.tokenize_with_weights(prompt)[0]]
    ours = WanTokenizer.from_spiece_bytes(spiece_model()).encode(prompt)
    assert theirs[: len(ours)] == ours  # ComfyUI pads to 512 after the EOS
    assert ours[-1] == 1 and 2 not in ours  # EOS id 1; no unknown piece in an ASCII prompt
