"""CLIP ViT-H/14 vision tower as Wan I2V uses it: the penultimate layer's 257 x 1280 tokens.

Parameter names are those of HF ``CLIPVisionModelWithProjection``, which is the layout of
ComfyUI's ``clip_vision_h.safetensors`` (``vision_model.*``, ``visual_projection.weight``), so that
file loads unchanged. Preprocessing follows ComfyUI's ``clip_preprocess`` (bicubic with antialias,
optional short-side resize + centre crop, quantisation to 8-bit levels, CLIP mean/std).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .identify import identify
from ..errors import WanFileError, WanInputError
from ..weights.checks import block_count, check_tensors, model_dims
from ..weights.names import CLIP_VISION, strip_prefix

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPVisionConfig:
    hidden: int = 1280
    layers: int = 32
    heads: int = 16
    intermediate: int = 5120
    patch: int = 14
    image_size: int = 224
    projection: int = 1024
    activation: str = "gelu"
    eps: float = 1e-5

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch) ** 2 + 1


VIT_H_14 = CLIPVisionConfig()

_ACTIVATIONS = {
    "gelu": F.gelu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}


class CLIPAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim] -> [B, L, dim]; full (non-causal) attention."""
        b, n = x.shape[0], self.heads
        q, k, v = (p(x).unflatten(-1, (n, -1)).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, L, head_dim]
        return self.out_proj(out.transpose(1, 2).reshape(b, x.shape[1], -1))


class CLIPMLP(nn.Module):
    def __init__(self, dim: int, intermediate: int, activation: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, intermediate)
        self.fc2 = nn.Linear(intermediate, dim)
        self.act = _ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.self_attn = CLIPAttention(cfg.hidden, cfg.heads)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.mlp = CLIPMLP(cfg.hidden, cfg.intermediate, cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(cfg) for _ in range(cfg.layers))


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(cfg.hidden))
        self.patch_embedding = nn.Conv2d(3, cfg.hidden, cfg.patch, stride=cfg.patch, bias=False)
        self.position_embedding = nn.Embedding(cfg.num_tokens, cfg.hidden)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: [B, 3, S, S] -> tokens [B, 1 + (S/patch)^2, hidden], class token first."""
        x = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight.to(x.dtype)


class CLIPVisionTransformer(nn.Module):
    def __init__(self, cfg: CLIPVisionConfig):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)  # sic: the upstream spelling
        self.encoder = CLIPEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)


class CLIPVisionH(nn.Module):
    """The vision tower; :meth:`encode` gives Wan's image conditioning [B, 257, 1280]."""

    def __init__(self, cfg: CLIPVisionConfig = VIT_H_14):
        super().__init__()
        self.config = cfg
        self.vision_model = CLIPVisionTransformer(cfg)
        # Unused by Wan (it takes the penultimate tokens) but kept so the file loads strictly.
        self.visual_projection = nn.Linear(cfg.hidden, cfg.projection, bias=False)

    def preprocess(self, images: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """images: [B, H, W, C] float in 0..1 (ComfyUI IMAGE; alpha dropped) -> [B, 3, S, S] fp32."""
        if images.ndim != 4 or images.shape[-1] not in (3, 4):
            raise WanInputError(f"expected images as [B, H, W, 3 or 4], got shape {tuple(images.shape)}")
        size = self.config.image_size
        x = images[..., :3].float().movedim(-1, 1)
        if x.shape[2] != size or x.shape[3] != size:
            if crop:  # short side to `size`, then the centre square
                scale = size / min(x.shape[2], x.shape[3])
                target = (round(scale * x.shape[2]), round(scale * x.shape[3]))
            else:  # squash to a square
                target = (size, size)
            x = F.interpolate(x, size=target, mode="bicubic", antialias=True)
            top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
            x = x[:, :, top : top + size, left : left + size]
        # ComfyUI images come from 8-bit files; snapping to 8-bit levels keeps results identical to it.
        x = (x * 255.0).clamp(0, 255).round() / 255.0
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, pixels: torch.Tensor, skip_last: int = 1) -> torch.Tensor:
        """pixels: [B, 3, S, S] normalised -> hidden states after all but the last ``skip_last``
        layers, [B, tokens, hidden] (no post-norm; skip_last=1 is HF ``hidden_states[-2]``)."""
        vm = self.vision_model
        x = vm.pre_layrnorm(vm.embeddings(pixels))
        for layer in vm.encoder.layers[: len(vm.encoder.layers) - skip_last]:
            x = layer(x)
        return x

    @torch.no_grad()
    def encode(self, images: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """images: [B, H, W, 3] in 0..1 -> penultimate hidden states [B, 257, 1280] float32."""
        device = self.vision_model.embeddings.patch_embedding.weight.device
        return self(self.preprocess(images.to(device), crop=crop)).float()


def clip_vision_config_from_state_dict(sd: dict, path=None, heads: int | None = None) -> CLIPVisionConfig:
    """Shapes -> config. Head count is not in the shapes: 16 for every released CLIP vision width."""
    key = "vision_model.embeddings.patch_embedding.weight"
    if key not in sd or "vision_model.embeddings.position_embedding.weight" not in sd:
        who = identify(sd)
        hint = "; use ComfyUI's clip_vision_h.safetensors" if who.role == "clip_vision" else ""
        raise WanFileError(path, "not a CLIP vision encoder in the HF/ComfyUI layout: it looks like "
                           f"{who.detail}{hint}")
    hidden, _, patch, _ = model_dims(sd[key], key, path, 4)
    tokens = model_dims(sd["vision_model.embeddings.position_embedding.weight"],
                        "vision_model.embeddings.position_embedding.weight", path, 2)[0]
    grid = math.isqrt(tokens - 1)
    if grid * grid != tokens - 1:
        raise WanFileError(path, f"position embedding of {tokens} tokens is not 1 + a square grid")
    layers = block_count(sd, "vision_model.encoder.layers.", path, "CLIP vision encoder")
    if not layers:
        raise WanFileError(path, "CLIP vision encoder without layers (vision_model.encoder.layers.0.* missing)")
    if heads is None:
        if hidden % 16:
            raise WanFileError(path, f"width {hidden} is not a released CLIP size; pass the head count")
        heads = 16
    # OpenAI's ViT-L/14 (1024 wide, 24 layers) was trained with quick-GELU; the LAION H/G use GELU.
    activation = "quick_gelu" if (hidden == 1024 and layers == 24) else "gelu"
    proj = sd.get("visual_projection.weight")
    return CLIPVisionConfig(
        hidden=int(hidden),
        layers=layers,
        heads=heads,
        intermediate=model_dims(sd["vision_model.encoder.layers.0.mlp.fc1.weight"],
                                "vision_model.encoder.layers.0.mlp.fc1.weight", path, 2)[0],
        patch=int(patch),
        image_size=int(grid * patch),
        projection=int(proj.shape[0]) if proj is not None else int(hidden),
        activation=activation,
    )


def load_clip_vision(
    state_dict: dict, path=None, dtype: torch.dtype = torch.float16, device="cpu", heads: int | None = None
) -> CLIPVisionH:
    """Build :class:`CLIPVisionH` from a ComfyUI/HF ``CLIPVisionModelWithProjection`` state dict."""
    sd = strip_prefix(state_dict, CLIP_VISION)
    sd.pop("vision_model.embeddings.position_ids", None)  # a buffer older transformers saved
    cfg = clip_vision_config_from_state_dict(sd, path, heads)
    with torch.device("meta"):
        model = CLIPVisionH(cfg)
    expected = model.state_dict()
    if "visual_projection.weight" not in sd:  # a bare CLIPVisionModel: the projection is never used
        sd["visual_projection.weight"] = torch.zeros(expected["visual_projection.weight"].shape)
    check_tensors(model, sd, path, "CLIP vision encoder")
    loaded = {k: v.to(device=device, dtype=dtype if v.is_floating_point() else None) for k, v in sd.items()}
    model.load_state_dict(loaded, assign=True)
    return model.eval().requires_grad_(False)
