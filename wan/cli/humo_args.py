"""``python -m wan generate`` flags of HuMo (--audio with --audio-encoder, --reference-image): the
speech encoded by the audio encoder (whisper large v3) for the HuMo pipeline. The flag names are
S2V's too (s2v_args.py): one audio flag whichever audio model runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..errors import WanInputError
from .s2v_args import encode_speech


def encode_audio_file(audio: str, encoder: str) -> dict:
    """The AUDIO_ENCODER_OUTPUT of the speech file through the encoder file (whisper large v3)."""
    return encode_speech(audio, encoder)


def humo_inputs(args: argparse.Namespace, read_image: Callable) -> dict:
    """The HuMo pipeline's inputs from the flags; WanInputError for flags HuMo takes no input of."""
    if args.image or args.end_image or args.control_video or args.clips is not None:
        raise WanInputError("HuMo takes --reference-image, --audio and --audio-encoder "
                            "(not --image/--end-image/--control-video/--clips)")
    inputs = {}
    if args.reference_image:
        inputs["reference_image"] = read_image(args.reference_image)
    if bool(args.audio) != bool(args.audio_encoder):
        raise WanInputError("HuMo's speech needs both --audio (the file) and --audio-encoder (whisper large v3)")
    if args.audio:
        inputs["audio_encoder_output"] = encode_audio_file(args.audio, args.audio_encoder)
    return inputs
