"""ComfyUI adapters over wan.video: Wan Video Combine writes an IMAGE batch as gif/webp/mp4/webm; Wan Decode
To Video decodes a LATENT straight into such a file (wan.job.decode_file), never holding all its frames."""

from __future__ import annotations

import logging
import os

from ..wan import video
from ..wan.errors import WanInputError
from ..wan.job.decode_file import decode_to_file
from ..wan.values import first_problem, range_problem
from ..wan.video_checks import FPS_RANGE, fps_problem, prefix_problem
from ._common import cancellable, main_device, on_device
from ._validate import check_received, validate
from .vae import WanVAEDecode, check_latent, tile_rule

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
        check_received(video_rule, frame_rate=frame_rate, filename_prefix=filename_prefix, format=format, crf=crf,
                       loop_count=loop_count)
        if images.shape[0] == 0:
            raise WanInputError("images is an empty batch: there are no frames to write")
        audio = _audio(audio, format, "Wan Video Combine")
        path, entry = _target(filename_prefix, save_output, images.shape[2], images.shape[1], format)
        with cancellable():  # also while ffmpeg finishes the frames it holds
            path = video.write_video(
                path, images, fps=frame_rate, format=format, loop_count=loop_count, pingpong=pingpong,
                crf=_crf(crf), audio=audio, metadata=_metadata(prompt, extra_pnginfo),
                on_frame=_progress(images.shape[0]),
            )
        return {"ui": {"images": [entry], "animated": (True,)}, "result": (str(path),)}


class WanDecodeToVideo:
    CATEGORY = "Wan"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("filenames",)
    OUTPUT_TOOLTIPS = ("Full path of the written file (one line per video of the batch).",)
    FUNCTION = "decode"
    DESCRIPTION = ("Decodes a Wan latent straight into a video file, a few frames at a time: RAM stays flat "
                   "however long the video (Wan VAE Decode + Wan Video Combine hold every frame).")

    @classmethod
    def INPUT_TYPES(cls):
        combine = WanVideoCombine.INPUT_TYPES()
        decode = WanVAEDecode.INPUT_TYPES()["required"]
        required = {"vae": decode["vae"], "samples": decode["samples"]}
        required.update((k, v) for k, v in combine["required"].items() if k != "images")
        optional = dict(combine["optional"])
        optional.update((k, decode[k]) for k in ("enable_vae_tiling", "tile_size", "tile_overlap"))
        return {"required": required, "optional": optional, "hidden": combine["hidden"]}

    @classmethod
    def VALIDATE_INPUTS(cls, frame_rate=None, filename_prefix=None, format=None, crf=None, tile_size=None,
                        tile_overlap=None):
        return validate(decode_video_rule, frame_rate=frame_rate, filename_prefix=filename_prefix, format=format,
                        crf=crf, tile_size=tile_size, tile_overlap=tile_overlap)

    def decode(self, vae, samples, frame_rate, loop_count, filename_prefix, format, pingpong, save_output,
               crf=-1, audio=None, enable_vae_tiling=False, tile_size=256, tile_overlap=64, prompt=None,
               extra_pnginfo=None):
        check_received(decode_video_rule, frame_rate=frame_rate, filename_prefix=filename_prefix, format=format,
                       crf=crf, loop_count=loop_count, tile_size=tile_size, tile_overlap=tile_overlap)
        latent = check_latent(vae, samples)
        audio = _audio(audio, format, "Wan Decode To Video")
        metadata = _metadata(prompt, extra_pnginfo)
        _b, _c, frames, height, width = vae.decoded_shape(latent[:1].shape)
        tile = (tile_size, tile_overlap) if enable_vae_tiling else None
        paths, entries = [], []
        with on_device(vae, main_device()), cancellable():
            for i in range(latent.shape[0]):  # one file per video of the batch
                path, entry = _target(filename_prefix, save_output, width, height, format)
                paths.append(str(decode_to_file(
                    vae, latent[i:i + 1], path, fps=frame_rate, format=format, tile=tile, loop_count=loop_count,
                    pingpong=pingpong, crf=_crf(crf), audio=audio, metadata=metadata,
                    on_frame=_progress(frames + max(frames - 2, 0) if pingpong else frames))))
                entries.append(entry)
        return {"ui": {"images": entries, "animated": (True,)}, "result": ("\n".join(paths),)}


def _crf(crf):
    return None if crf is None or crf < 0 else crf


def _audio(audio, format: str, node: str):
    """ComfyUI's AUDIO -> wan.video's (waveform, rate), or None where the format holds no audio."""
    if audio is not None and video.FORMATS[format].audio_codec is None:
        log.warning("%s: %s holds no audio; the audio input is ignored", node, format)
        return None
    return None if audio is None else (audio["waveform"][0], int(audio["sample_rate"]))


def _metadata(prompt, extra_pnginfo):
    """The prompt and workflow to embed, as ComfyUI's savers embed them (none with --disable-metadata)."""
    # ComfyUI's modules are imported in the functions, not at the top: pytest imports the pack's
    # root __init__ (and so this module) outside ComfyUI while setting up tests.
    from comfy.cli_args import args

    if args.disable_metadata:
        return None
    metadata = {} if prompt is None else {"prompt": prompt}
    metadata.update(extra_pnginfo or {})
    return metadata or None


def _target(prefix: str, save_output: bool, width: int, height: int, format: str):
    """(path, the UI's entry for it): the next free name under ComfyUI's output (or temp) folder."""
    import folder_paths

    kind = "output" if save_output else "temp"
    root = folder_paths.get_output_directory() if save_output else folder_paths.get_temp_directory()
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, root, width, height)
    file = f"{name}_{counter:05}_.{video.extension(format)}"
    return os.path.join(folder, file), {"filename": file, "subfolder": subfolder, "type": kind}


def _progress(total: int):
    """on_frame for the writer: ComfyUI's progress bar, and its interrupt between frames."""
    import comfy.model_management
    import comfy.utils

    progress = comfy.utils.ProgressBar(total)

    def on_frame(position, total):
        comfy.model_management.throw_exception_if_processing_interrupted()
        progress.update_absolute(position + 1, total)

    return on_frame


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


def decode_video_rule(tile_size=None, tile_overlap=None, **combine) -> str | None:
    """Wan Decode To Video's rule: Video Combine's and the VAE decode's tile inputs."""
    return first_problem(video_rule(**combine), tile_rule(tile_size=tile_size, tile_overlap=tile_overlap))


NODE_CLASS_MAPPINGS = {"WanVideoCombine": WanVideoCombine, "WanDecodeToVideo": WanDecodeToVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"WanVideoCombine": "Wan Video Combine", "WanDecodeToVideo": "Wan Decode To Video"}
