"""Wan 2.2 Animate: the "Wan Animate Embeds" node (reference image, pose video, face video ->
WANIMAGEEMBEDS for the Wan Sampler). The conditioning is ``wan.job.conditioning_animate``; the node
only moves the VAE to the compute device and keeps its output on the CPU.
"""

from __future__ import annotations

from ._common import CATEGORY, WANCLIPEMBEDS, WANIMAGEEMBEDS, WANVAE, cancellable, main_device, on_device
from ._notices import showing_notices
from ._validate import check_received, validate
from .encoders import _size_inputs, _to_cpu, size_rule


class WanAnimateEmbeds:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANIMAGEEMBEDS, "INT", "INT")
    RETURN_NAMES = ("image_embeds", "trim_image", "video_frame_offset")
    FUNCTION = "encode"
    DESCRIPTION = ("Wan 2.2 Animate conditioning: the character of the reference image moved by the pose video, "
                   "its expression by the face video; with background_video and character_mask it replaces the "
                   "masked person in that video. For long videos run window after window: feed the last "
                   "frames of the previous window to continue_motion and its video_frame_offset output here, "
                   "and drop trim_image frames from the front of each later window.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": (WANVAE,),
                **_size_inputs(frames=77),
                "continue_motion_max_frames": ("INT", {"default": 5, "min": 1, "max": 4096, "step": 4,
                                                       "tooltip": "At most this many frames of continue_motion are kept."}),
                "video_frame_offset": ("INT", {"default": 0, "min": 0, "max": 1 << 20, "step": 1,
                                               "tooltip": "The frame of the pose and face videos this window starts at."}),
            },
            "optional": {
                "reference_image": ("IMAGE", {"tooltip": "The character to animate (black when absent)."}),
                "pose_video": ("IMAGE", {"tooltip": "Driving poses; cut or padded (last frame repeated) to num_frames."}),
                "face_video": ("IMAGE", {"tooltip": "Driving face crops (resized to 512x512)."}),
                "clip_embeds": (WANCLIPEMBEDS, {"tooltip": "Wan CLIP Vision Encode of the reference image."}),
                "continue_motion": ("IMAGE", {"tooltip": "The previous window's frames, continued here."}),
                "background_video": ("IMAGE", {"tooltip": "Replace mode: the video the character is put into "
                                                          "(read from video_frame_offset)."}),
                "character_mask": ("MASK", {"tooltip": "Replace mode: 1 where the character goes in background_video "
                                                       "(one frame for all, or one per frame)."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, width=None, height=None, num_frames=None):
        return validate(size_rule, width=width, height=height, num_frames=num_frames)

    @showing_notices  # a size rounded, a short pose video padded
    def encode(self, vae, width, height, num_frames, continue_motion_max_frames, video_frame_offset,
               reference_image=None, pose_video=None, face_video=None, clip_embeds=None, continue_motion=None,
               background_video=None, character_mask=None):
        from ..wan.job.conditioning_animate import animate_conditioning

        check_received(size_rule, width=width, height=height, num_frames=num_frames)
        with on_device(vae, main_device()), cancellable():
            cond, window = animate_conditioning(
                vae, width, height, num_frames, reference_image, pose_video, face_video, clip_fea=clip_embeds,
                continue_motion=continue_motion, continue_motion_max_frames=continue_motion_max_frames,
                video_frame_offset=video_frame_offset, background_video=background_video,
                character_mask=character_mask)
        return (_to_cpu(cond), window.trim_image, window.video_frame_offset)


NODE_CLASS_MAPPINGS = {"WanAnimateEmbeds": WanAnimateEmbeds}
NODE_DISPLAY_NAME_MAPPINGS = {"WanAnimateEmbeds": "Wan Animate Embeds"}
