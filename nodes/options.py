"""Option nodes that shape how the sampler runs the model: context windows for long videos."""

from __future__ import annotations

from ._common import CATEGORY, WANCONTEXT, check_window

from ..wan.sampling.context import FUSE_METHODS, SCHEDULES  # the library's lists, so both stay in step

CONTEXT_FRAMES, CONTEXT_OVERLAP = (1, 1001), (0, 1000)  # pixel frames


class WanContextOptions:
    CATEGORY = CATEGORY
    RETURN_TYPES = (WANCONTEXT,)
    RETURN_NAMES = ("context_options",)
    FUNCTION = "make"
    DESCRIPTION = ("Denoise a long video in overlapping windows of frames, fused with weights; counts are "
                   "pixel frames, converted to latent frames as ComfyUI's WAN context windows do.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "schedule": (list(SCHEDULES), {"default": "static_standard"}),
            "context_frames": ("INT", {"default": 81, "min": CONTEXT_FRAMES[0], "max": CONTEXT_FRAMES[1], "step": 4,
                                       "tooltip": "Window length in pixel frames."}),
            "context_stride": ("INT", {"default": 4, "min": 4, "max": 100, "step": 4,
                                       "tooltip": "Pixel frames; 4 per latent frame (uniform schedules)."}),
            "context_overlap": ("INT", {"default": 16, "min": CONTEXT_OVERLAP[0], "max": CONTEXT_OVERLAP[1], "step": 1,
                                        "tooltip": "Pixel frames shared by neighbouring windows."}),
            "fuse_method": (list(FUSE_METHODS), {"default": "pyramid"}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, context_frames=None, context_overlap=None):
        return check_window("context_frames", context_frames, CONTEXT_FRAMES,
                            "context_overlap", context_overlap, CONTEXT_OVERLAP)

    def make(self, schedule, context_frames, context_stride, context_overlap, fuse_method):
        from ..wan.sampling.context import ContextOptions

        stride = max(1, context_stride // 4)
        return (ContextOptions.from_pixel_frames(context_frames, context_overlap, context_stride=stride,
                                                 schedule=schedule, fuse_method=fuse_method),)


NODE_CLASS_MAPPINGS = {"WanContextOptions": WanContextOptions}
NODE_DISPLAY_NAME_MAPPINGS = {"WanContextOptions": "Wan Context Options"}
