"""A UMT5 file as ComfyUI's own CLIP (type "wan"): ComfyUI's T5 and WanT5Tokenizer over our weights.

``wan`` reads and checks the file first (a DiT, VAE, LoRA, CLIP-L or truncated file fails there,
naming it, before ComfyUI builds anything), renames GGUF tensors to the HF T5 names ComfyUI's T5
holds, keeps GGUF and fp8 Linear weights packed, and takes the sentencepiece model from the file
(the ``spiece_model`` tensor, or a GGUF's tokenizer metadata). ComfyUI then builds the CLIP as its
CLIPLoader does for type "wan" (``comfy.sd.load_text_encoder_state_dicts``), except that

- the T5 sizes come from the file's shapes through ComfyUI's ``umt5xxl_model_config`` model option
  (CLIPLoader's fixed umt5_config_xxl.json would refuse the tiny test files; for a full-size file
  the two agree), and
- its operations are ``PackedOps`` (the ``custom_operations`` model option, which ComfyUI's
  SDClipModel hands to the T5 in 0.3.75 and 0.8.0 alike), and its patcher a ``PackedModelPatcher``,
  so ComfyUI's LoraLoader patches packed weights inside their layer's forward;
- ComfyUI builds the T5 on the meta device (its ``initial_device`` option) and the weights are
  assigned, not copied in: CLIPLoader allocates every Linear in the compute dtype first (11 GB for
  UMT5-XXL in fp16) and overwrites it, which would cost a GGUF or fp8 file more memory on load than
  it saves. ComfyUI's model management then moves the model to its device at the first encode.
"""

from __future__ import annotations

import torch

from ..wan.job.load import text_encoder_weights
from ..wan.weights.packed import is_packed
from ._comfy_packed import packed_ops, patcher_class


def load_text_encoder(path, dtype: torch.dtype | None = None, device: str = "default"):
    """ComfyUI's CLIP (``comfy.sd.CLIP``) for the UMT5 file at ``path``, any format we read.

    ``dtype`` None: a safetensors file's own dtype (as ComfyUI's CLIPLoader decides), else
    ComfyUI's text-encoder dtype for the device. ``device`` "cpu" keeps it on the CPU, as
    CLIPLoader's device option does.
    """
    import comfy.model_management as mm
    import comfy.sd
    import comfy.supported_models_base
    import comfy.text_encoders.wan
    import comfy.utils

    options = {"initial_device": torch.device("meta")}
    if device == "cpu":
        options["load_device"] = options["offload_device"] = torch.device("cpu")
    load_device = options.get("load_device", mm.text_encoder_device())
    weights = text_encoder_weights(path, dtype, default_dtype=mm.text_encoder_dtype(load_device))
    options.update(custom_operations=packed_ops(), umt5xxl_model_config=weights.config)
    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.wan.WanT5Tokenizer,
                                                    comfy.text_encoders.wan.te(dtype_t5=weights.dtype))
    spiece = torch.frombuffer(bytearray(weights.spiece), dtype=torch.uint8)
    clip = comfy.sd.CLIP(target, tokenizer_data={"spiece_model": spiece},
                         parameters=comfy.utils.calculate_parameters(weights.state_dict), model_options=options)
    _assign_weights(clip, weights, path)
    _use_packed_patcher(clip)
    return clip


def _assign_weights(clip, weights, path) -> None:
    """What ``clip.load_sd`` does (the T5's ``load_state_dict``), assigning the tensors to the
    meta-built model on ComfyUI's offload device, plain ones in the CLIP's dtype."""
    device = clip.patcher.offload_device
    state_dict = {k: (v.to(device) if is_packed(v) else v.to(device=device, dtype=weights.dtype))
                  for k, v in weights.state_dict.items()}
    t5 = clip.cond_stage_model.umt5xxl.transformer
    t5.load_state_dict(state_dict, strict=False, assign=True)
    left = [n for n, t in [*clip.cond_stage_model.named_parameters(), *clip.cond_stage_model.named_buffers()]
            if t.is_meta]
    if left:  # the checks in wan make this unreachable short of a ComfyUI that names things anew
        raise RuntimeError(f"{path}: ComfyUI's UMT5 did not take {', '.join(left[:5])}")


def _use_packed_patcher(clip) -> None:
    """Give the CLIP a ``PackedModelPatcher``. ``comfy.sd.CLIP`` makes a plain ModelPatcher in its
    constructor (and may load it there); the replacement copies the state ComfyUI set on it, is
    sized from the packed weights now in the model, and takes the old one's place in ComfyUI's
    model management (``load_models_gpu`` drops a loaded patcher of the same model)."""
    import comfy.model_management as mm

    old = clip.patcher
    new = patcher_class()(old.model, load_device=old.load_device, offload_device=old.offload_device)
    for name in ("hook_mode", "is_clip", "force_cast_weights"):
        if hasattr(old, name):
            setattr(new, name, getattr(old, name))
    new.object_patches = old.object_patches.copy()  # 0.8.0's compute-dtype patch
    new.model_options = old.model_options.copy()
    clip.patcher = new
    if any(m is old for m in mm.loaded_models()):
        mm.load_models_gpu([new], force_full_load=True)
