"""Encoder nodes: prompts (UMT5), images (CLIP vision) and the per-task video conditioning.

WANIMAGEEMBEDS carries a ``wan.job.conditioning.VideoConditioning``: the output size and frame count
plus whatever the task adds (I2V mask + latent and CLIP tokens, VACE context, TI2V fixed frames).
All of it is built by ``wan.job.conditioning``; these nodes only move models to the compute device.
"""

from __future__ import annotations

from ._common import (
    CATEGORY, WANCLIPEMBEDS, WANCLIPVISION, WANIMAGEEMBEDS, WANTEXTEMBEDS, WANTEXTENCODER, WANVAE,
    cancellable, main_device, on_device,
)
from ._validate import check_received, validate
from ._notices import showing_notices

from ..wan.values import FRAMES_RANGE, SIZE_RANGE, first_problem, frames_problem, size_problem

MAX_SIZE = SIZE_RANGE[1]
MAX_FRAMES = FRAMES_RANGE[1]


def _size_inputs(width=832, height=480, frames=81) -> dict:
    return {
        "width": ("INT", {"default": width, "min": SIZE_RANGE[0], "max": MAX_SIZE, "step": 16,
                          "tooltip": "Pixels; a multiple of 16 (32 for Wan2.2 TI2V-5B)."}),
        "height": ("INT", {"default": height, "min": SIZE_RANGE[0], "max": MAX_SIZE, "step": 16}),
        "num_frames": ("INT", {"default": frames, "min": FRAMES_RANGE[0], "max": MAX_FRAMES, "step": 4,
                               "tooltip": "1 + 4k frames (1 makes an image)."}),
    }


def size_rule(width=None, height=None, num_frames=None) -> str | None:
    """The one rule of the size inputs (VALIDATE_INPUTS and the node's run, see _common)."""
    return first_problem(size_problem("width", width), size_problem("height", height),
                         frames_problem("num_frames", num_frames))


class WanTextEncode:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANTEXTEMBEDS,)
    RETURN_NAMES = ("text_embeds",)
    FUNCTION = "encode"
    DESCRIPTION = "Encodes the positive and negative prompts with UMT5 (512 tokens each)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoder": (WANTEXTENCODER,),
            "positive_prompt": ("STRING", {"multiline": True, "default": "",
                                           "tooltip": "What the video should show."}),
            "negative_prompt": ("STRING", {"multiline": True, "default": "",
                                           "tooltip": "What to steer away from (used when cfg > 1)."}),
        }}

    @showing_notices  # a prompt cut to 512 tokens
    def encode(self, text_encoder, positive_prompt, negative_prompt):
        from ..wan.job.conditioning import encode_prompts, prompt_list

        prompt_list(negative_prompt, "negative_prompt")  # the node always has one (None means none in the API)
        with on_device(text_encoder.model, _encode_device(text_encoder, "text encoder")), cancellable():
            embeds = encode_prompts(text_encoder, positive_prompt, negative_prompt)
        return (embeds._replace(positive=embeds.positive.cpu(), negative=embeds.negative.cpu()),)


class WanCLIPVisionEncode:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANCLIPEMBEDS,)
    RETURN_NAMES = ("clip_embeds",)
    FUNCTION = "encode"
    DESCRIPTION = "CLIP ViT-H penultimate tokens of the start image (and of the end image for first-last-frame)."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip_vision": (WANCLIPVISION,),
                "image": ("IMAGE", {"tooltip": "The first frame is encoded."}),
            },
            "optional": {
                "end_image": ("IMAGE", {"tooltip": "First-last-frame: its last frame is encoded too."}),
            },
        }

    def encode(self, clip_vision, image, end_image=None):
        import torch

        from ..wan.job.conditioning import as_images

        with on_device(clip_vision, _encode_device(clip_vision, "CLIP vision")):
            tokens = [clip_vision.encode(as_images(image, "image")[:1])]
            if end_image is not None:
                tokens.append(clip_vision.encode(as_images(end_image, "end_image")[-1:]))
        return (torch.cat(tokens, dim=1).float().cpu(),)


class EmbedsNode:
    """What every conditioning node of ours shares: one image_embeds output and the size rule."""
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANIMAGEEMBEDS,)
    RETURN_NAMES = ("image_embeds",)
    FUNCTION = "encode"

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None, num_frames=None):
        return validate(size_rule, width=width, height=height, num_frames=num_frames)


class WanEmptyEmbeds(EmbedsNode):
    FUNCTION = "make"
    DESCRIPTION = "Size and length of a text-to-video (or, with 1 frame, text-to-image) job."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": _size_inputs()}

    def make(self, width, height, num_frames):
        from ..wan.job.conditioning import t2v_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        # 16 latent channels (Wan2.1 VAE); the sampler switches to 48 for a Wan2.2 TI2V-5B model.
        return (t2v_conditioning(width, height, num_frames, 16),)


class WanImageToVideoEncode(EmbedsNode):
    DESCRIPTION = ("Image-to-video conditioning: the start image (and optional end image) encoded by the VAE. "
                   "With the Wan2.2 VAE it builds the TI2V-5B conditioning instead.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (WANVAE,),
                **_size_inputs(),
                "start_image": ("IMAGE",),
                "noise_aug_strength": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 10.0, "step": 0.001,
                                                 "tooltip": "Noise added to the known frames before encoding."}),
            },
            "optional": {
                "end_image": ("IMAGE", {"tooltip": "First-last-frame-to-video (FLF2V models)."}),
                "clip_embeds": (WANCLIPEMBEDS, {"tooltip": "From Wan CLIP Vision Encode (Wan2.1 I2V/FLF2V)."}),
            },
        }

    @showing_notices  # a TI2V size rounded to 32
    def encode(self, vae, width, height, num_frames, start_image, noise_aug_strength, end_image=None,
               clip_embeds=None):
        from ..wan.job.conditioning import i2v_conditioning, ti2v_conditioning
        from ..wan.errors import WanInputError

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            if vae.z_dim == 48:
                if end_image is not None or clip_embeds is not None:
                    raise WanInputError("the Wan2.2 VAE means TI2V-5B, which takes a start image only "
                                        "(no end_image, no clip_embeds)")
                cond = ti2v_conditioning(vae, width, height, num_frames, image=start_image)
            else:
                cond = i2v_conditioning(vae, None, start_image, width, height, num_frames, end_image=end_image,
                                        noise_aug_strength=noise_aug_strength)
        if clip_embeds is not None:
            cond = cond.replace(clip_fea=clip_embeds)
        return (_to_cpu(cond),)


class WanVACEEncode(EmbedsNode):
    DESCRIPTION = "VACE conditioning: a reference image, control frames and masks, any of them optional."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (WANVAE,),
                **_size_inputs(),
                "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01}),
            },
            "optional": {
                "reference_image": ("IMAGE", {"tooltip": "Look to carry into the video (its first frame)."}),
                "control_images": ("IMAGE", {"tooltip": "Control video frames (depth, pose, ... or frames to keep)."}),
                "control_masks": ("MASK", {"tooltip": "1 = generate, 0 = keep the control frame's pixels."}),
            },
        }

    def encode(self, vae, width, height, num_frames, strength, reference_image=None, control_images=None,
               control_masks=None):
        from ..wan.job.conditioning import vace_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            cond = vace_conditioning(vae, width, height, num_frames, strength, reference_image=reference_image,
                                     control_video=control_images, mask=control_masks)
        return (_to_cpu(cond),)


def _encode_device(encoder, what: str):
    """The compute device, or the CPU when the encoder does not fit into what the device has
    available (the memory plan's rule: ``wan.job.memory.encoder_device_now``)."""
    import logging

    import torch

    from ..wan.job.memory import encoder_device_now

    device = main_device()
    if encoder_device_now(encoder, device) != "cpu":
        return device
    logging.getLogger(__name__).info("Wan memory plan: %s on cpu (it does not fit beside what %s holds)",
                                     what, device)
    return torch.device("cpu")


def _to_cpu(cond):
    """Node outputs stay cached between prompts; keep them off the accelerator."""
    import torch

    changes = {k: v.cpu() for k, v in vars(cond).items() if isinstance(v, torch.Tensor)}
    return cond.replace(**changes)


NODE_CLASS_MAPPINGS = {
    "WanTextEncode": WanTextEncode,
    "WanCLIPVisionEncode": WanCLIPVisionEncode,
    "WanEmptyEmbeds": WanEmptyEmbeds,
    "WanImageToVideoEncode": WanImageToVideoEncode,
    "WanVACEEncode": WanVACEEncode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "WanTextEncode": "Wan Text Encode",
    "WanCLIPVisionEncode": "Wan CLIP Vision Encode",
    "WanEmptyEmbeds": "Wan Empty Embeds",
    "WanImageToVideoEncode": "Wan Image To Video Encode",
    "WanVACEEncode": "Wan VACE Encode",
}
