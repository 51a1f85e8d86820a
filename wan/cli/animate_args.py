"""``python -m wan generate`` flags of Wan 2.2 Animate (--pose-video, --face-video with
--reference-image; replace mode: --background-video with --character-mask): the driving videos
read for the Animate pipeline."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from ..errors import WanInputError

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def add_animate_arguments(inputs: argparse._ArgumentGroup) -> None:
    inputs.add_argument("--pose-video", help="Wan Animate: driving pose video (with --reference-image)")
    inputs.add_argument("--face-video", help="Wan Animate: driving face crops video")
    inputs.add_argument("--background-video",
                        help="Wan Animate replace mode: the video the character is put into (with --character-mask)")
    inputs.add_argument("--character-mask",
                        help="Wan Animate replace mode: mask video, or one image for all frames; white (its red "
                             "channel) where the character goes")


def animate_inputs(args: argparse.Namespace, is_animate: bool, read_image: Callable, read_video: Callable) -> dict:
    """The Animate pipeline's inputs from the flags; WanInputError when they meet another model."""
    if not is_animate:
        if args.pose_video or args.face_video or args.background_video or args.character_mask:
            raise WanInputError("--pose-video/--face-video/--background-video/--character-mask need the "
                                "Wan 2.2 Animate diffusion model")
        return {}
    if args.image or args.end_image or args.control_video:
        raise WanInputError("Wan Animate takes --reference-image, --pose-video and --face-video "
                            "(not --image/--end-image/--control-video)")
    inputs = {}
    if args.reference_image:
        inputs["reference_image"] = read_image(args.reference_image)
    if args.pose_video:
        inputs["pose_video"] = read_video(args.pose_video)
    if args.face_video:
        inputs["face_video"] = read_video(args.face_video)
    if args.background_video:
        inputs["background_video"] = read_video(args.background_video)
    if args.character_mask:
        path = args.character_mask
        frames = read_image(path) if os.path.splitext(path)[1].lower() in _IMAGE_EXTS else read_video(path)
        inputs["character_mask"] = frames[..., 0]  # ComfyUI's ImageToMask default: the red channel
    return inputs
