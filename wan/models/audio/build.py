"""transformers' networks for the audio encoders, configured from a file's layout.

transformers is an optional extra of the pack (``pip install "comfyui-wan-nodes[audio]"``; inside
ComfyUI it is always there, ComfyUI requires it), so it is imported only here, when an audio
encoder is built.
"""

from __future__ import annotations

from torch import nn

from ...errors import WanError
from ...weights.audio_names import AudioEncoderLayout

TRANSFORMERS_HINT = 'install it with: pip install "comfyui-wan-nodes[audio]" (or pip install transformers)'


class MissingPackageError(WanError, ImportError):
    """An optional package a feature needs is not installed."""


def _transformers():
    try:
        import transformers
    except ImportError as error:
        raise MissingPackageError(f"the audio encoders (wav2vec2, whisper) need the transformers package: "
                                  f"{TRANSFORMERS_HINT}") from error
    return transformers


def wav2vec2_config(layout: AudioEncoderLayout):
    e = layout.extra
    n = e["conv_layers"]
    # The published wav2vec2 convolution stack: 10/5 then 3/2 (x4) then 2/2 (x2), 320x downsampling
    kernels, strides = (10, 3, 3, 3, 3, 2, 2)[:n], (5, 2, 2, 2, 2, 2, 2)[:n]
    return _transformers().Wav2Vec2Config(
        hidden_size=layout.width, num_hidden_layers=layout.layers, num_attention_heads=layout.heads,
        intermediate_size=layout.ffn, hidden_act="gelu", feat_extract_activation="gelu",
        feat_extract_norm=e["conv_norm"], conv_bias=e["conv_bias"], conv_dim=(e["conv_dim"],) * n,
        conv_kernel=kernels, conv_stride=strides, num_conv_pos_embeddings=e["pos_kernel"],
        num_conv_pos_embedding_groups=e["pos_groups"], do_stable_layer_norm=e["stable_layer_norm"],
        layer_norm_eps=1e-5, hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        feat_proj_dropout=0.0, layerdrop=0.0, apply_spec_augment=False,
    )


def whisper_config(layout: AudioEncoderLayout):
    return _transformers().WhisperConfig(
        d_model=layout.width, encoder_layers=layout.layers, encoder_attention_heads=layout.heads,
        encoder_ffn_dim=layout.ffn, num_mel_bins=layout.extra["mels"],
        max_source_positions=layout.extra["positions"], activation_function="gelu",
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0,
    )


def build_network(layout: AudioEncoderLayout) -> nn.Module:
    """The untrained transformers module (call under ``torch.device("meta")`` to allocate nothing)."""
    t = _transformers()
    if layout.kind == "wav2vec2":
        return t.Wav2Vec2Model(wav2vec2_config(layout))
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    return WhisperEncoder(whisper_config(layout))
