"""``python -m wan generate`` flags of Wan 2.2 S2V (--audio, --audio-encoder, --clips, with
--reference-image and --control-video): the speech encoded by the wav2vec2 encoder for the S2V
pipeline (``pipelines_s2v.SoundPipeline``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import WanInputError
from ..job.audio import encode_audio_file


def add_s2v_arguments(inputs: argparse._ArgumentGroup) -> None:
    inputs.add_argument("--audio", help="Wan S2V, HuMo: the speech (an audio file; with --audio-encoder)")
    inputs.add_argument("--audio-encoder", help="the audio encoder file (audio_encoders folder): wav2vec2 for Wan "
                        "S2V, whisper large v3 for HuMo")
    inputs.add_argument("--clips", type=int, default=None,
                        help="Wan S2V: clips of --frames to make (default: as many as the speech fills)")


def encode_speech(audio_path: str, encoder_path: str) -> dict:
    """The speech file through the audio encoder -> ComfyUI's AUDIO_ENCODER_OUTPUT dict."""
    return encode_audio_file(encoder_path, audio_path)[1]


def s2v_inputs(args: argparse.Namespace, is_s2v: bool, read_image: Callable, read_video: Callable,
               encode: Callable | None = None) -> dict:
    """The S2V pipeline's inputs from the flags; WanInputError when they meet another model."""
    if not is_s2v:
        if args.audio or args.audio_encoder or args.clips is not None:
            raise WanInputError("--audio/--audio-encoder need a Wan 2.2 S2V or HuMo diffusion model, --clips the S2V one")
        return {}
    if args.image or args.end_image:
        raise WanInputError("Wan S2V takes --reference-image (the speaker), --audio and --control-video "
                            "(not --image/--end-image)")
    if bool(args.audio) != bool(args.audio_encoder):
        raise WanInputError("Wan S2V: give --audio and --audio-encoder together")
    inputs = {}
    if args.clips is not None:
        inputs["clips"] = args.clips
    if args.audio:
        inputs["audio_encoder_output"] = (encode or encode_speech)(args.audio, args.audio_encoder)
    if args.reference_image:
        inputs["ref_image"] = read_image(args.reference_image)
    if args.control_video:
        inputs["control_video"] = read_video(args.control_video)
    return inputs
