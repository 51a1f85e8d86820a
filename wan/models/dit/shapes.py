"""A Wan DiT's configuration read from its tensor names and shapes alone (never from a file name)."""

from __future__ import annotations

import math

from .config import DIT_PRESETS, FACE_EVERY, S2V_INJECT_LAYERS, DiTConfig, same_network
from ...errors import WanFileError
from ...weights.checks import block_count, model_dims
from ...weights.names import dit_to_official

_REQUIRED = (
    "patch_embedding.weight",
    "text_embedding.0.weight",
    "time_embedding.0.weight",
    "time_projection.1.weight",
    "head.head.weight",
    "head.modulation",
)


def config_from_shapes(state_dict: dict, path=None) -> DiTConfig:
    """The configuration of a Wan DiT state dict (any supported layout and wrapper).

    Values may be tensors (meta and packed ones too) or shapes read from a header. The variant
    name is the matching preset's; Wan2.1 T2V 14B and each Wan2.2 T2V A14B expert have identical
    tensors, so both come back as "t2v_14b". Shapes without a preset give a config named
    "custom_<model_type>". The caller has made sure the tensors are a Wan DiT's (``identify``);
    missing or inconsistent ones raise WanFileError. The block count must be backed by the
    tensors (``block_count``) and every dimension read here is bounded (``model_dims``), so no
    model is built for what a header merely claims; a few missing tensors are left for the
    loader's check to name.
    """
    if not state_dict:
        raise WanFileError(path, "holds no tensors: an empty file")
    sd = dit_to_official(state_dict)
    num_layers = block_count(sd, "blocks.", path, "Wan DiT")
    missing = [k for k in _REQUIRED if k not in sd]
    ffn = "blocks.0.ffn.0.weight"  # a file without block 0 is refused: nothing to size the blocks by
    if ffn not in sd:
        missing.append(ffn)
    if missing:
        hint = ""
        if "patch_embedding.weight" in missing:
            hint = " (some older GGUF conversions keep the 5-D patch_embedding in a separate file)"
        raise WanFileError(path, f"incomplete Wan DiT: missing {', '.join(missing)}{hint}")

    def shape(name, ndim=None):
        return model_dims(sd[name], name, path, ndim)

    pe = shape("patch_embedding.weight", 5)
    dim, in_dim, patch = pe[0], pe[1], pe[2:]
    head = shape("head.head.weight", 2)
    if head[0] % math.prod(patch):
        raise WanFileError(path, f"head.head.weight has shape {head}, not a multiple of the patch {patch}")
    out_dim = head[0] // math.prod(patch)
    fields = dict(
        in_dim=in_dim, out_dim=out_dim, dim=dim, ffn_dim=shape(ffn, 2)[0],
        # Every released Wan DiT uses 128-channel heads (ComfyUI assumes the same).
        num_heads=max(1, dim // 128), num_layers=num_layers, freq_dim=shape("time_embedding.0.weight", 2)[1],
        text_dim=shape("text_embedding.0.weight", 2)[1], patch_size=tuple(patch),
    )
    if "img_emb.proj.1.weight" in sd:
        fields.update(has_image_emb=True, img_dim=shape("img_emb.proj.1.weight", 2)[1])
        if "img_emb.emb_pos" in sd:
            fields.update(has_flf_pos_emb=True, flf_pos_tokens=shape("img_emb.emb_pos", 3)[1])
    if "ref_conv.weight" in sd:
        fields.update(ref_in_dim=shape("ref_conv.weight", 4)[1])
    if "control_adapter.conv.weight" in sd:
        fields.update(camera_in_dim=camera_channels(shape("control_adapter.conv.weight", 4), path))
    if "vace_patch_embedding.weight" in sd:
        n = block_count(sd, "vace_blocks.", path, "Wan DiT VACE")
        if not 0 < n <= num_layers:
            raise WanFileError(path, f"VACE patch embedding without usable VACE blocks ({n} for {num_layers} blocks)")
        fields.update(vace_in_dim=shape("vace_patch_embedding.weight", 5)[1],
                      vace_layers=tuple(range(0, num_layers, num_layers // n))[:n])
        model_type = "vace"
    elif "casual_audio_encoder.encoder.final_linear.weight" in sd:  # as ComfyUI's detection
        fields.update(sound_fields(sd, shape, path))
        model_type = "s2v"
    elif "face_adapter.fuser_blocks.0.k_norm.weight" in sd:
        n = block_count(sd, "face_adapter.fuser_blocks.", path, "Wan Animate face adapter")
        if n * FACE_EVERY != num_layers:
            raise WanFileError(path, f"Wan Animate DiT with {n} face adapter blocks for {num_layers} blocks "
                                     f"(expected one per {FACE_EVERY})")
        model_type = "animate"
    elif "audio_proj.audio_proj_glob_1.layer.weight" in sd:
        # 8 whisper frames x 5 layer groups of the encoder's width per latent frame
        fields.update(audio_dim=shape("audio_proj.audio_proj_glob_1.layer.weight", 2)[1] // 40)
        model_type = "humo"
    elif fields.get("camera_in_dim"):
        model_type = "camera"
    elif fields.get("has_flf_pos_emb"):
        model_type = "flf2v"
    elif in_dim - out_dim in (2 * out_dim, 2 * out_dim + 4):  # control + image latents (2.2: a mask between)
        model_type = "fun_control"
    elif in_dim > out_dim:
        model_type = "i2v"
    elif out_dim == 48:
        model_type = "ti2v"
    else:
        model_type = "t2v"
    try:
        cfg = DiTConfig(variant=f"custom_{model_type}", model_type=model_type, **fields)
    except ValueError as err:
        raise WanFileError(path, f"Wan DiT with inconsistent shapes: {err}") from None
    for preset in DIT_PRESETS.values():
        if same_network(preset, cfg):
            return preset
    return cfg


def camera_channels(conv_shape, path=None) -> int:
    """Camera adapter input channels from ``control_adapter.conv.weight`` (it sees the embedding
    8x8 pixel-unshuffled: 64 values per channel)."""
    if conv_shape[1] % 64:
        raise WanFileError(path, f"control_adapter.conv.weight has shape {tuple(conv_shape)}: "
                                 "its input channels are not a multiple of 64 (8x8 pixel unshuffle)")
    return conv_shape[1] // 64


def sound_fields(sd: dict, shape, path=None) -> dict:
    """The S2V sizes: wav2vec2 width and hidden-state layers from the audio encoder; the injector
    count must be the reference code's (which blocks they follow is not stored in the file)."""
    need = ("casual_audio_encoder.encoder.conv1_local.conv.weight", "casual_audio_encoder.weights")
    if any(k not in sd for k in need):
        raise WanFileError(path, f"incomplete Wan S2V DiT: missing {', '.join(k for k in need if k not in sd)}")
    n = block_count(sd, "audio_injector.injector.", path, "Wan S2V audio injector")
    if n != len(S2V_INJECT_LAYERS):
        raise WanFileError(path, f"Wan S2V DiT with {n} audio injector blocks, the S2V model has "
                                 f"{len(S2V_INJECT_LAYERS)}")
    return dict(audio_dim=shape("casual_audio_encoder.encoder.conv1_local.conv.weight", 3)[1],
                audio_layers=shape("casual_audio_encoder.weights", 4)[1], audio_inject_layers=S2V_INJECT_LAYERS)
