"""Option nodes that shape how the sampler runs the model: context windows for long videos."""

from __future__ import annotations

from ._common import CATEGORY, WANCONTEXT
from ._validate import check_received, validate

from ..wan.sampling.context import (  # the library's lists and rules, so both stay in step
    CONTEXT_FRAMES_RANGE as CONTEXT_FRAMES, CONTEXT_OVERLAP_RANGE as CONTEXT_OVERLAP, FUSE_METHODS, SCHEDULES,
    pixel_window_problem,
)
from ..wan.values import first_problem, range_problem

CONTEXT_STRIDE = (4, 100)  # pixel frames


def context_rule(context_frames=None, context_overlap=None, context_stride=None) -> str | None:
    """The one rule of the window inputs, in the pixel frames the user typed (VALIDATE_INPUTS and
    the node's run, see _common)."""
    return first_problem(pixel_window_problem(context_frames, context_overlap),
                         range_problem("context_stride", context_stride, *CONTEXT_STRIDE, integer=True))


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
            "context_stride": ("INT", {"default": 4, "min": CONTEXT_STRIDE[0], "max": CONTEXT_STRIDE[1], "step": 4,
                                       "tooltip": "Pixel frames; 4 per latent frame (uniform schedules)."}),
            "context_overlap": ("INT", {"default": 16, "min": CONTEXT_OVERLAP[0], "max": CONTEXT_OVERLAP[1], "step": 1,
                                        "tooltip": "Pixel frames shared by neighbouring windows."}),
            "fuse_method": (list(FUSE_METHODS), {"default": "pyramid"}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, context_frames=None, context_overlap=None):
        # context_stride has only a range: ComfyUI checks the widget, the run checks a linked value
        return validate(context_rule, context_frames=context_frames, context_overlap=context_overlap)

    def make(self, schedule, context_frames, context_stride, context_overlap, fuse_method):
        from ..wan.sampling.context import ContextOptions

        check_received(context_rule, context_frames=context_frames, context_overlap=context_overlap,
                       context_stride=context_stride)
        stride = max(1, context_stride // 4)
        return (ContextOptions.from_pixel_frames(context_frames, context_overlap, context_stride=stride,
                                                 schedule=schedule, fuse_method=fuse_method),)


NODE_CLASS_MAPPINGS = {"WanContextOptions": WanContextOptions}
NODE_DISPLAY_NAME_MAPPINGS = {"WanContextOptions": "Wan Context Options"}
