"""The "Wan Animate Embeds" node in process: the replace-mode inputs are OPTIONAL sockets typed as
ComfyUI's WanAnimateToVideo types them (IMAGE background, MASK character mask), so saved workflows
without them keep loading, and a node given them builds ComfyUI's WanAnimateToVideo conditioning
(mask channels of ``y`` exact, as tests/job/test_conditioning_animate.py compares the library)."""

import importlib

import pytest
import torch

from refs import comfy, comfy_extras, import_pack
from vae_fixtures import random_weights

W, H, FRAMES = 32, 32, 5


@pytest.fixture(scope="module")
def pack():
    name = import_pack().__name__
    return {m: importlib.import_module(f"{name}.{m}") for m in ("nodes.animate", "wan.errors")}


def test_replace_inputs_are_optional_sockets_of_comfyuis_types(pack):
    spec = pack["nodes.animate"].WanAnimateEmbeds.INPUT_TYPES()
    schema = comfy_extras("nodes_wan").WanAnimateToVideo.define_schema()
    theirs = {i.id: i for i in schema.inputs}
    for name in ("background_video", "character_mask"):
        assert name in spec["optional"] and name not in spec["required"]
        assert spec["optional"][name][0] == theirs[name].get_io_type()
        assert theirs[name].optional


def test_node_replace_mode_mask_matches_comfyui(pack):
    torch.set_num_threads(2)
    layers = importlib.import_module(import_pack().__name__ + ".wan.models.vae.layers")
    vae_mod = importlib.import_module(import_pack().__name__ + ".wan.models.vae.wan21")
    ours = vae_mod.WanVAE(layers.VAEConfig(dim=8, z_dim=16, num_res_blocks=2)).eval()
    sd = random_weights(ours.state_dict(), seed=6)
    ours.load_state_dict(sd)
    ref_vae = comfy("comfy.sd").VAE(sd=sd, dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    background, mask = torch.rand(FRAMES, 40, 48, 3, generator=g), (torch.rand(FRAMES, 40, 48, generator=g) > 0.5).float()
    node = pack["nodes.animate"].WanAnimateEmbeds()
    cond, trim_image, offset = node.encode(ours, W, H, FRAMES, 5, 0, background_video=background, character_mask=mask)
    pos, _, _, _, ref_trim, ref_offset = comfy_extras("nodes_wan").WanAnimateToVideo.execute(
        [[torch.zeros(1, 1, 8), {}]], [[torch.zeros(1, 1, 8), {}]], ref_vae, W, H, FRAMES, 1, 5, 0,
        background_video=background, character_mask=mask)
    assert (trim_image, offset) == (ref_trim, ref_offset)
    known = 1.0 - pos[0][1]["concat_mask"]  # ComfyUI's model inverts the node's mask (WAN21.concat_cond)
    assert torch.equal(cond.y[:, :4], known)
    assert not torch.equal(known[:, :, 1:], torch.zeros_like(known[:, :, 1:]))
