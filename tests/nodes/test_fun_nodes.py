"""The Fun nodes in process: the camera input is ComfyUI's own WAN_CAMERA_EMBEDDING type (its
WanCameraEmbedding node plugs in), bad inputs are refused with a message naming the input before
the sampler runs, and linked size values meet the size rule before any model work."""

import importlib

import pytest
import torch

from refs import comfy, comfy_extras, import_pack
from vae_fixtures import pack_vae21


@pytest.fixture(scope="module")
def pack():
    name = import_pack().__name__
    return {m: importlib.import_module(f"{name}.{m}") for m in ("nodes.fun", "wan.errors", "nodes")}


@pytest.fixture(scope="module")
def vae(pack):
    return pack_vae21(seed=5)


def test_registered_with_comfyui_camera_type(pack):
    reg = pack["nodes"]
    for key, title in (("WanFunInpaintEmbeds", "Wan Fun Inpaint Embeds"),
                       ("WanFunControlEmbeds", "Wan Fun Control Embeds"), ("WanCameraEmbeds", "Wan Camera Embeds")):
        assert key in reg.NODE_CLASS_MAPPINGS and reg.NODE_DISPLAY_NAME_MAPPINGS[key] == title
    io = comfy("comfy_api.latest").io
    ours = pack["nodes.fun"].WanCameraEmbeds.INPUT_TYPES()["optional"]["camera_embedding"][0]
    assert ours == io.WanCameraEmbedding.io_type  # the output type of ComfyUI's WanCameraEmbedding


def test_camera_embedding_of_another_length_is_refused(pack, vae):
    node = comfy_extras("nodes_camera_trajectory").WanCameraEmbedding
    camera = node.execute("Pan Left", 32, 32, 9)[0]  # made for 9 frames
    with pytest.raises(pack["wan.errors"].WanInputError, match="camera poses for 9 frames but the video has 5"):
        pack["nodes.fun"].WanCameraEmbeds().encode(vae, 32, 32, 5, camera_embedding=camera)
    (cond,) = pack["nodes.fun"].WanCameraEmbeds().encode(vae, 32, 32, 9, camera_embedding=camera)
    assert torch.equal(cond.camera, camera) and cond.y is None


def test_inpaint_needs_an_image_and_control_resizes(pack, vae):
    fun = pack["nodes.fun"]
    with pytest.raises(pack["wan.errors"].WanInputError, match="needs a start_image, an end_image or both"):
        fun.WanFunInpaintEmbeds().encode(vae, 32, 32, 5)
    # a control video of another size and length is fitted and cut, as ComfyUI does
    (cond,) = fun.WanFunControlEmbeds().encode(vae, 32, 48, 5, control_video=torch.rand(9, 40, 64, 3))
    assert cond.y.shape == (1, 36, 2, 6, 4)
    clip = torch.rand(1, 514, 1280)
    (cond,) = fun.WanFunInpaintEmbeds().encode(vae, 32, 32, 5, start_image=torch.rand(1, 32, 32, 3), clip_embeds=clip)
    assert torch.equal(cond.clip_fea, clip[:, :257])  # the start image's tokens only


def test_linked_sizes_meet_the_rule_first(pack):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"model work before the check: .{name}")

    fun = pack["nodes.fun"]
    for cls in (fun.WanFunInpaintEmbeds, fun.WanFunControlEmbeds, fun.WanCameraEmbeds):
        assert "multiple of 16" in cls.VALIDATE_INPUTS(width=40, height=32, num_frames=5)
        with pytest.raises(pack["wan.errors"].WanInputError, match="width must be a multiple of 16, got 40"):
            cls().encode(Untouchable(), 40, 32, 5)
