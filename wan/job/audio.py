"""Audio for the speech-driven pipelines (S2V, HuMo): an audio encoder and an audio file in, ComfyUI's
AUDIO_ENCODER_OUTPUT dict out (see ``wan.models.audio``)."""

from __future__ import annotations

import os

import torch

from ..audio import from_audio_dict, load_audio, to_audio_dict
from ..errors import WanInputError
from ..models.audio import AudioEncoder
from ..models.audio import load_audio_encoder as _load_encoder
from .options import LoadOptions

# ComfyUI keeps audio encoders in its text-encoder dtype: fp16 wherever a GPU runs them
AUDIO_ENCODER_OPTIONS = LoadOptions(dtype=torch.float16)


def load_audio_encoder(path: str | os.PathLike, options: LoadOptions = AUDIO_ENCODER_OPTIONS) -> AudioEncoder:
    """The wav2vec2 or whisper encoder of a safetensors file in ComfyUI's published layout."""
    return _load_encoder(path, dtype=options.dtype, device=options.compute_device)


def encode_audio(encoder, audio: dict) -> dict:
    """AUDIO -> AUDIO_ENCODER_OUTPUT with ``encoder``: ours, or ComfyUI core's AudioEncoderModel."""
    waveform, rate = from_audio_dict(audio)
    if isinstance(encoder, AudioEncoder):
        return encoder.encode(waveform, rate)
    if callable(getattr(encoder, "encode_audio", None)):
        return encoder.encode_audio(waveform, rate)
    raise WanInputError(f"audio_encoder must be a loaded audio encoder, got {type(encoder).__name__}")


def encode_audio_file(encoder: str | os.PathLike | AudioEncoder, audio_path: str | os.PathLike,
                      options: LoadOptions = AUDIO_ENCODER_OPTIONS) -> tuple[dict, dict]:
    """Encode the audio file at ``audio_path`` with ``encoder`` (a loaded encoder or the path of its
    file); returns (AUDIO, AUDIO_ENCODER_OUTPUT): the pipelines need the clip's length as well."""
    if not isinstance(encoder, AudioEncoder):
        encoder = load_audio_encoder(encoder, options)
    audio = to_audio_dict(*load_audio(audio_path))
    return audio, encode_audio(encoder, audio)
