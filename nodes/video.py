"""ComfyUI adapter over wan.video: Wan Video Combine writes an IMAGE batch as gif/webp/mp4/webm."""

from __future__ import annotations

import logging
import os

from ..wan import video
from ..wan.errors import WanInputError
from ..wan.values import first_problem, range_problem
from ..wan.video_checks import FPS_RANGE, fps_problem, prefix_problem
from ._common import cancellable
from ._validate import check_received, validate

log = logging.getLogger(__name__)


class WanVideoCombine:
    CATEGORY = "Wan"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("filenames",)
    OUTPUT_TOOLTIPS = ("Full path of the written file.",)
    FUNCTION = "combine"
    DESCRIPTION = "Writes the frames as an animated image or a video file, with optional audio and the workflow embedded."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames, in order."}),
                "frame_rate": ("FLOAT", {"default": 16.0, "min": FPS_RANGE[0], "max": FPS_RANGE[1], "step": 1.0,
                                         "tooltip": "Frames per second (Wan 2.1: 16, Wan 2.2 TI2V-5B: 24)."}),
                "loop_count": ("INT", {"default": 0, "min": LOOPS[0], "max": LOOPS[1],
                                       "tooltip": "gif/webp: times to repeat; 0 loops forever."}),
                "filename_prefix": ("STRING", {"default": "Wan",
                                               "tooltip": "File name prefix, may hold subfolders of the output folder."}),
                "format": (list(video.FORMATS), {"default": "video/h264-mp4"}),
                "pingpong": ("BOOLEAN", {"default": False,
                                         "tooltip": "Play forwards then backwards (2N-2 frames)."}),
                "save_output": ("BOOLEAN", {"default": True,
                                            "tooltip": "Off: write to ComfyUI's temp folder (a preview)."}),
            },
            "optional": {
                "crf": ("INT", {"default": -1, "min": CRF[0], "max": CRF[1],
                                "tooltip": "Video formats: quality, lower is better; -1 is the format's default "
                                           "(h264 19, h265 22, webm 32). h264/h265 accept 0..51."}),
                "audio": ("AUDIO", {"tooltip": "Muxed into mp4 (aac) or webm (opus); gif/webp ignore it."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, frame_rate=None, filename_prefix=None, format=None, crf=None):
        # Widget values here, before the graph runs (crf 52 for h264 no longer waits for the sampler);
        # a linked value is checked by the same rule when the node runs (see _common).
        return validate(video_rule, frame_rate=frame_rate, filename_prefix=filename_prefix, format=format, crf=crf)

    def combine(self, images, frame_rate, loop_count, filename_prefix, format, pingpong, save_output,
                crf=-1, audio=None, prompt=None, extra_pnginfo=None):
        # ComfyUI's modules are imported here, not at the top: pytest imports the pack's root
        # __init__ (and so this module) outside ComfyUI while setting up tests.
        import comfy.model_management
        import comfy.utils
        import folder_paths
        from comfy.cli_args import args

        check_received(video_rule, frame_rate=frame_rate, filename_prefix=filename_prefix, format=format, crf=crf,
                       loop_count=loop_count)
        if images.shape[0] == 0:
            raise WanInputError("images is an empty batch: there are no frames to write")
        if audio is not None and video.FORMATS[format].audio_codec is None:
            log.warning("Wan Video Combine: %s holds no audio; the audio input is ignored", format)
            audio = None
        if audio is not None:
            audio = (audio["waveform"][0], int(audio["sample_rate"]))

        metadata = None
        if not args.disable_metadata:
            metadata = {}
            if prompt is not None:
                metadata["prompt"] = prompt
            metadata.update(extra_pnginfo or {})

        kind = "output" if save_output else "temp"
        root = folder_paths.get_output_directory() if save_output else folder_paths.get_temp_directory()
        height, width = images.shape[1], images.shape[2]
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, root, width, height)
        file = f"{name}_{counter:05}_.{video.extension(format)}"

        progress = comfy.utils.ProgressBar(images.shape[0])

        def on_frame(position, total):
            comfy.model_management.throw_exception_if_processing_interrupted()
            progress.update_absolute(position + 1, total)

        with cancellable():  # also while ffmpeg finishes the frames it holds
            path = video.write_video(
                os.path.join(folder, file), images, fps=frame_rate, format=format, loop_count=loop_count,
                pingpong=pingpong, crf=None if crf is None or crf < 0 else crf, audio=audio,
                metadata=metadata or None, on_frame=on_frame,
            )
        ui = {"images": [{"filename": file, "subfolder": subfolder, "type": kind}], "animated": (True,)}
        return {"ui": ui, "result": (str(path),)}


LOOPS, CRF = (0, 100), (-1, 63)  # widget ranges; crf -1: the format's default


def video_rule(frame_rate=None, filename_prefix=None, format=None, crf=None, loop_count=None) -> str | None:
    """The one rule of Video Combine's values (VALIDATE_INPUTS and the node's run, see _common):
    the frame rate, the prefix, and the crf for the chosen format's codec (wan.video)."""
    problem = first_problem(fps_problem(frame_rate) if frame_rate is not None else None,
                            prefix_problem(filename_prefix) if filename_prefix is not None else None,
                            range_problem("crf", crf, *CRF, integer=True),
                            range_problem("loop_count", loop_count, *LOOPS, integer=True))
    if problem is None and format is not None:
        problem = video.crf_problem(format, None if crf is None or crf < 0 else crf)
    return problem


NODE_CLASS_MAPPINGS = {"WanVideoCombine": WanVideoCombine}
NODE_DISPLAY_NAME_MAPPINGS = {"WanVideoCombine": "Wan Video Combine"}
