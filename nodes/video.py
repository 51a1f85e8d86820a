"""ComfyUI adapter over wan.video: Wan Video Combine writes an IMAGE batch as gif/webp/mp4/webm."""

from __future__ import annotations

import logging
import os

from ..wan import video
from ..wan.errors import WanInputError
from ._common import cancellable

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
                "frame_rate": ("FLOAT", {"default": 16.0, "min": 0.01, "max": 240.0, "step": 1.0,
                                         "tooltip": "Frames per second (Wan 2.1: 16, Wan 2.2 TI2V-5B: 24)."}),
                "loop_count": ("INT", {"default": 0, "min": 0, "max": 100,
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
                "crf": ("INT", {"default": -1, "min": -1, "max": 63,
                                "tooltip": "Video formats: quality, lower is better; -1 is the format's default "
                                           "(h264 19, h265 22, webm 32). h264/h265 accept 0..51."}),
                "audio": ("AUDIO", {"tooltip": "Muxed into mp4 (aac) or webm (opus); gif/webp ignore it."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, frame_rate=None, filename_prefix=None):
        # Widget values only: a linked input arrives as None and is checked when the node runs.
        if frame_rate is not None and not frame_rate > 0:
            return f"frame_rate must be > 0, got {frame_rate}"
        if filename_prefix is not None:
            problem = prefix_problem(filename_prefix)
            if problem:
                return problem
        return True

    def combine(self, images, frame_rate, loop_count, filename_prefix, format, pingpong, save_output,
                crf=-1, audio=None, prompt=None, extra_pnginfo=None):
        # ComfyUI's modules are imported here, not at the top: pytest imports the pack's root
        # __init__ (and so this module) outside ComfyUI while setting up tests.
        import comfy.model_management
        import comfy.utils
        import folder_paths
        from comfy.cli_args import args

        problem = prefix_problem(filename_prefix)
        if problem:
            raise WanInputError(problem)
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


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot name a file inside the output folder, or None if it can."""
    if not prefix or not prefix.strip():
        return "filename_prefix is empty"
    if os.path.isabs(prefix) or prefix.startswith(("/", "\\")) or os.path.splitdrive(prefix)[0]:
        return f"filename_prefix must be relative to the output folder, got the absolute path {prefix!r}"
    if any(ord(ch) < 32 for ch in prefix):
        return f"filename_prefix {prefix!r} contains control characters (NUL, newline, ...)"
    parts = os.path.normpath(prefix.replace("\\", "/")).split(os.sep)
    if parts and parts[0] == "..":
        return f"filename_prefix {prefix!r} points outside the output folder ('..' is not allowed)"
    # File systems cap one name at 255 bytes; the last part also gets a "_00001_.webm"-style suffix.
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in parts)
    if longest > 255 - len("_00001_.webm") - 1:
        return f"filename_prefix has a folder or file name of {longest} bytes; the limit is 242"
    return None


NODE_CLASS_MAPPINGS = {"WanVideoCombine": WanVideoCombine}
NODE_DISPLAY_NAME_MAPPINGS = {"WanVideoCombine": "Wan Video Combine"}
