"""Our packed weights inside ComfyUI's own Wan model: the seam of the MODEL and CLIP loaders.

ComfyUI builds its own network (``comfy.ldm.wan.model.WanModel``, the UMT5 of
``comfy.text_encoders``) from the state dict we hand it, with ``PackedOps`` as its operations
namespace. ``PackedOps`` is ComfyUI's ``manual_cast`` namespace except for ``Linear``: a Linear
whose weight arrives packed (GGUF, fp8) keeps the packed bytes as its ``weight`` parameter (uint8,
so ComfyUI's memory accounting sees the real size and its partial loading moves the bytes) and
dequantizes them per forward into the input's dtype, then runs ComfyUI's ``weight_function`` list
on the result, the hook through which ComfyUI's LoRA patches reach a weight it does not hold in
full (its "lowvram" patches).

``PackedModelPatcher`` is a ``ModelPatcher`` that routes LoRA patches of packed weights to that
hook instead of patching the weight in place (which would read the packed bytes as numbers), so
ComfyUI's LoraLoader / LoraLoaderModelOnly work unchanged and no layer is ever unpacked outside
its own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..wan.errors import WanFileError
from ..wan.job.load import dit_weights
from ..wan.weights.packed import dequantize_packed, is_packed


def packed_ops():
    """The operations namespace (built on first use: ComfyUI's modules load only inside ComfyUI)."""
    global _OPS
    if _OPS is None:
        _OPS = _build_ops()
    return _OPS


_OPS = None


def _unique_patches(functions):
    """ComfyUI's partial unload appends its own LowVramPatch for a key we already deferred; each
    key's patch must run once."""
    seen, out = set(), []
    for f in functions:
        key = getattr(f, "key", None)
        if key is not None and getattr(f, "patches", None) is not None:
            if key in seen:
                continue
            seen.add(key)
        out.append(f)
    return out


def _build_ops():
    import comfy.ops

    class PackedOps(comfy.ops.manual_cast):
        class Linear(comfy.ops.manual_cast.Linear):
            packed = None  # (qtype, logical shape, scale) when the weight is packed

            def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs):
                value = state_dict.get(prefix + "weight")
                if not is_packed(value):
                    return super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                                          missing_keys, unexpected_keys, error_msgs)
                if tuple(value.shape) != (self.out_features, self.in_features):
                    error_msgs.append(f"{prefix}weight: packed shape {tuple(value.shape)} does not fit "
                                      f"Linear({self.in_features}, {self.out_features})")
                    return
                # a layer built on the meta device (nothing allocated) takes the bytes where they are
                device = value.data.device if self.weight.is_meta else self.weight.device
                self.weight = torch.nn.Parameter(value.data.to(device), requires_grad=False)
                self.packed = (value.qtype, value.shape, value.scale)
                rest = {k: v for k, v in state_dict.items() if k != prefix + "weight"}
                missing = []
                super()._load_from_state_dict(rest, prefix, local_metadata, strict, missing,
                                              unexpected_keys, error_msgs)
                missing_keys.extend(k for k in missing if k != prefix + "weight")

            def forward_comfy_cast_weights(self, input):
                if self.packed is None:
                    return super().forward_comfy_cast_weights(input)
                qtype, shape, scale = self.packed
                weight = dequantize_packed(self.weight, qtype, shape, scale, input.dtype, input.device)
                for f in _unique_patches(self.weight_function):
                    weight = f(weight)
                bias = None
                if self.bias is not None:
                    bias = self.bias.to(device=input.device, dtype=input.dtype)
                    for f in self.bias_function:
                        bias = f(bias)
                return F.linear(input, weight, bias)

    return PackedOps


def is_packed_module(module) -> bool:
    return getattr(module, "packed", None) is not None


def patcher_class():
    global _PATCHER
    if _PATCHER is None:
        _PATCHER = _build_patcher()
    return _PATCHER


_PATCHER = None


def _build_patcher():
    import comfy.model_patcher as mp
    import comfy.utils

    class PackedModelPatcher(mp.ModelPatcher):
        """ComfyUI's ModelPatcher, except that a patch (LoRA) of a packed weight is applied to the
        dequantized weight inside the layer's forward, as ComfyUI does for weights it offloads."""

        def _packed_owner(self, key):
            owner_name, _, leaf = key.rpartition(".")
            if leaf != "weight":
                return None
            try:
                owner = comfy.utils.get_attr(self.model, owner_name)
            except AttributeError:
                return None
            return owner if is_packed_module(owner) else None

        def patch_weight_to_device(self, key, device_to=None, inplace_update=False):
            owner = self._packed_owner(key) if key in self.patches else None
            if owner is None:
                return super().patch_weight_to_device(key, device_to=device_to, inplace_update=inplace_update)
            others = [f for f in owner.weight_function if getattr(f, "key", None) != key]
            owner.weight_function = others + [mp.LowVramPatch(key, self.patches)]

        def unpatch_model(self, device_to=None, unpatch_weights=True):
            result = super().unpatch_model(device_to=device_to, unpatch_weights=unpatch_weights)
            if unpatch_weights:  # ComfyUI wipes these only after a partial load
                for m in self.model.modules():
                    if is_packed_module(m):
                        m.weight_function = [f for f in m.weight_function if not isinstance(f, mp.LowVramPatch)]
            return result

    return PackedModelPatcher


def load_diffusion_model(path, dtype: torch.dtype | None = None, quantization: str = "disabled"):
    """ComfyUI's own Wan model (a ``PackedModelPatcher``) from a DiT file in any format we read.

    The file is read and checked by ``wan`` first (a file of another model, a truncated or lying
    file fails here, naming it, before ComfyUI builds anything); ComfyUI then detects the variant
    from the names and shapes and builds its network with ``PackedOps``. ``dtype`` None lets
    ComfyUI choose the compute dtype for the device, as its UNETLoader does.
    """
    import comfy.sd

    _, state_dict = dit_weights(path, quantization)
    # Only Linear weights (2-D) stay packed; ComfyUI's Conv3d and modulation parameters take plain
    # tensors (in a GGUF they are small and usually F16/F32 anyway).
    state_dict = {k: (v.dequantize(torch.float32) if is_packed(v) and v.ndim != 2 else v)
                  for k, v in state_dict.items()}
    options = {"custom_operations": packed_ops()}
    if dtype is not None:
        options["dtype"] = dtype
    loaded = comfy.sd.load_diffusion_model_state_dict(state_dict, model_options=options)
    if loaded is None:
        raise WanFileError(path, "ComfyUI does not recognise this Wan model's layout")
    return patcher_class()(loaded.model, load_device=loaded.load_device, offload_device=loaded.offload_device)
