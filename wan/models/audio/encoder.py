"""Loading an audio encoder file and encoding audio to ComfyUI's AUDIO_ENCODER_OUTPUT.

``encode`` returns the dict ComfyUI's ``AudioEncoderModel.encode_audio`` returns, with the same
values: the audio resampled to 16 kHz and mixed to one channel; wav2vec2's input normalised over
the whole batch (large) or left raw (base); whisper's 30 s log-mel window. As under ComfyUI's
manual-cast ops, the weights stay in their load dtype and the network computes in float32.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from .build import build_network
from .mel import SAMPLE_RATE, log_mel
from ..identify import identify
from ...audio import resample
from ...errors import WanFileError, WanInputError
from ...weights.audio_names import WAV2VEC2_OPTIONAL, AudioEncoderLayout, read_layout, to_transformers
from ...weights.checks import check_tensors, shape_of
from ...weights.safetensors import read_safetensors

COMPUTE_DTYPE = torch.float32


class AudioEncoder(nn.Module):
    """A loaded wav2vec2 or whisper encoder (``network`` is transformers' module)."""

    def __init__(self, network: nn.Module, layout: AudioEncoderLayout):
        super().__init__()
        self.network = network
        self.layout = layout
        self.sample_rate = SAMPLE_RATE

    @property
    def kind(self) -> str:
        return self.layout.kind

    @torch.no_grad()  # not inference_mode: the weights are re-cast in place and must stay ordinary tensors
    def encode(self, waveform: torch.Tensor, sample_rate: int) -> dict:
        """``waveform`` [batch, channels, samples] at ``sample_rate`` -> {"encoded_audio": [B, T, D],
        "encoded_audio_all_layers": (one [B, T, D] per layer input, then the output), "audio_samples"}."""
        if not isinstance(waveform, torch.Tensor) or waveform.ndim != 3 or 0 in waveform.shape:
            raise WanInputError(f"audio waveform must be [batch, channels, samples], got "
                                f"{tuple(getattr(waveform, 'shape', ())) or type(waveform).__name__}")
        device = next(self.network.parameters()).device
        audio = resample(waveform.to(device=device, dtype=torch.float32), int(sample_rate), SAMPLE_RATE)
        with _computing_in(self.network, COMPUTE_DTYPE):
            if self.kind == "wav2vec2":
                x = audio.mean(dim=1)
                if self.layout.extra["normalize_input"]:
                    x = (x - x.mean()) / torch.sqrt(x.var() + 1e-7)  # over the batch, as ComfyUI
                out = self.network(input_values=x, output_hidden_states=True)
            else:
                out = self.network(input_features=log_mel(audio, self.layout.extra["mels"]), output_hidden_states=True)
        # ComfyUI lists each layer's input, then the encoder's output (after the final norm where
        # there is one); transformers records each layer's output, so its last entry is pre-norm.
        layers = (*out.hidden_states[:-1], out.last_hidden_state)
        return {"encoded_audio": out.last_hidden_state, "encoded_audio_all_layers": layers,
                "audio_samples": audio.shape[2]}

    def encode_audio(self, waveform: torch.Tensor, sample_rate: int) -> dict:
        """ComfyUI core's name for ``encode``: its AudioEncoderEncode node accepts our encoder."""
        return self.encode(waveform, sample_rate)


@contextlib.contextmanager
def _computing_in(module: nn.Module, dtype: torch.dtype):
    """Run ``module`` with its float tensors in ``dtype``, then put each back: the round trip from
    fp16/bf16 through float32 is exact, so the stored weights do not change."""
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point() and t.dtype != dtype]
    homes = [t.dtype for t in tensors]
    for t in tensors:
        t.data = t.data.to(dtype)
    try:
        yield module
    finally:
        for t, home in zip(tensors, homes):
            t.data = t.data.to(home)


def layout_of(state_dict: dict, path=None) -> AudioEncoderLayout:
    """The file's layout, or WanFileError saying what the file is instead."""
    shapes = {k: shape_of(v) for k, v in state_dict.items()}
    layout = read_layout(shapes)
    if layout is None:
        raise WanFileError(path, f"not an audio encoder (wav2vec2 or whisper): this is {identify(shapes).detail}")
    return layout


def audio_encoder_from_state_dict(state_dict: dict, path=None, dtype: torch.dtype = torch.float16,
                                  device="cpu") -> AudioEncoder:
    """Build the encoder a ComfyUI-layout state dict holds (names as published)."""
    layout = layout_of(state_dict, path)
    sd = to_transformers(layout, state_dict)
    with torch.device("meta"):
        network = build_network(layout)
    expected = network.state_dict()
    for name in WAV2VEC2_OPTIONAL:
        if name in expected and name not in sd:
            sd[name] = torch.zeros(expected[name].shape)
    check_tensors(network, sd, path, f"{layout.kind} audio encoder", prefix=layout.prefix)
    loaded = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else None) for k, v in sd.items()}
    network.load_state_dict(loaded, assign=True, strict=True)
    return AudioEncoder(network.eval().requires_grad_(False), layout)


def load_audio_encoder(path: str | os.PathLike, dtype: torch.dtype = torch.float16, device="cpu") -> AudioEncoder:
    """Load a wav2vec2 (large/base) or whisper (large v3) encoder from a safetensors file in the
    published ComfyUI layout; a file of another kind is a WanFileError naming it and what it is."""
    path = os.fspath(path)
    if not path.lower().endswith(".safetensors"):
        raise WanFileError(path, "audio encoders are read from .safetensors files only (never pickles)")
    return audio_encoder_from_state_dict(read_safetensors(path), path, dtype, device)
