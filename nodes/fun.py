"""Fun model nodes (VideoX-Fun inpaint, control and camera): conditioning for the Wan Sampler.

Each builds a WANIMAGEEMBEDS (``wan.job.conditioning_fun``) as ComfyUI's WanFunInpaintToVideo,
WanFunControlToVideo / Wan22FunControlToVideo and WanCameraImageToVideo do; the sampler fits it to
the model it meets (2.1 models take it without the mask) and refuses a model of another task
before sampling. The camera node takes ComfyUI's own WAN_CAMERA_EMBEDDING (its WanCameraEmbedding
node: motion presets, speed, intrinsics), so graphs mix the core node with ours.
"""

from __future__ import annotations

from ._common import WANCLIPEMBEDS, WANVAE, cancellable, main_device, on_device
from ._validate import check_received
from .encoders import EmbedsNode, _size_inputs, _to_cpu, size_rule

CAMERA_EMBEDDING = "WAN_CAMERA_EMBEDDING"  # ComfyUI's type (comfy_extras/nodes_camera_trajectory.py)
_CLIP_TIP = "From Wan CLIP Vision Encode of the start image (Wan2.1 Fun models); only its first 257 tokens are used."


def _start_clip(clip_embeds):
    # The Fun models have no first/last-frame embedding: the start image's tokens only.
    return None if clip_embeds is None else clip_embeds[:, :257]


class WanFunInpaintEmbeds(EmbedsNode):
    DESCRIPTION = ("Fun inpaint (Wan2.1/2.2 Fun InP models): start and/or end frames, the frames between "
                   "generated (ComfyUI's WanFunInpaintToVideo).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (WANVAE,), **_size_inputs()},
                "optional": {"start_image": ("IMAGE", {"tooltip": "First frame(s); resized and cropped to the size."}),
                             "end_image": ("IMAGE", {"tooltip": "Last frame(s)."}),
                             "clip_embeds": (WANCLIPEMBEDS, {"tooltip": _CLIP_TIP})}}

    def encode(self, vae, width, height, num_frames, start_image=None, end_image=None, clip_embeds=None):
        from ..wan.errors import WanInputError
        from ..wan.job.conditioning_fun import fun_inpaint_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        if start_image is None and end_image is None:
            raise WanInputError("Wan Fun Inpaint Embeds needs a start_image, an end_image or both")
        with on_device(vae, main_device()), cancellable():
            cond = fun_inpaint_conditioning(vae, None, width, height, num_frames, start_image, end_image)
        return (_to_cpu(cond.replace(clip_fea=_start_clip(clip_embeds))),)


class WanFunControlEmbeds(EmbedsNode):
    DESCRIPTION = ("Fun control (Wan2.1/2.2 Fun Control models): a control video (depth, pose, canny ...), "
                   "optional start frames and reference image (ComfyUI's WanFunControlToVideo / "
                   "Wan22FunControlToVideo).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (WANVAE,), **_size_inputs()},
                "optional": {"control_video": ("IMAGE", {"tooltip": "Control frames; resized and cut to num_frames."}),
                             "start_image": ("IMAGE", {"tooltip": "First frame(s) to keep."}),
                             "reference_image": ("IMAGE", {"tooltip": "Look to follow (V1.1 and 2.2 models)."}),
                             "clip_embeds": (WANCLIPEMBEDS, {"tooltip": _CLIP_TIP})}}

    def encode(self, vae, width, height, num_frames, control_video=None, start_image=None, reference_image=None,
               clip_embeds=None):
        from ..wan.job.conditioning_fun import fun_control_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            cond = fun_control_conditioning(vae, None, width, height, num_frames, control_video, start_image,
                                            reference_image)
        return (_to_cpu(cond.replace(clip_fea=_start_clip(clip_embeds))),)


class WanCameraEmbeds(EmbedsNode):
    DESCRIPTION = ("Fun camera (Wan2.1/2.2 Fun Control-Camera models): a camera embedding from ComfyUI's "
                   "WanCameraEmbedding node and optional start frames (ComfyUI's WanCameraImageToVideo).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (WANVAE,), **_size_inputs()},
                "optional": {"camera_embedding": (CAMERA_EMBEDDING, {
                                 "tooltip": "From WanCameraEmbedding, made with this width, height and length."}),
                             "start_image": ("IMAGE", {"tooltip": "First frame(s)."}),
                             "clip_embeds": (WANCLIPEMBEDS, {"tooltip": _CLIP_TIP})}}

    def encode(self, vae, width, height, num_frames, camera_embedding=None, start_image=None, clip_embeds=None):
        from ..wan.job.conditioning_fun import fun_camera_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            cond = fun_camera_conditioning(vae, None, width, height, num_frames, camera_embedding, start_image)
        return (_to_cpu(cond.replace(clip_fea=_start_clip(clip_embeds))),)


NODE_CLASS_MAPPINGS = {
    "WanFunInpaintEmbeds": WanFunInpaintEmbeds,
    "WanFunControlEmbeds": WanFunControlEmbeds,
    "WanCameraEmbeds": WanCameraEmbeds,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "WanFunInpaintEmbeds": "Wan Fun Inpaint Embeds",
    "WanFunControlEmbeds": "Wan Fun Control Embeds",
    "WanCameraEmbeds": "Wan Camera Embeds",
}
