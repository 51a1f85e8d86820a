"""The parts Wan 2.2 Animate adds to the DiT: the face motion encoder (a StyleGAN-style appearance
network and a learned motion basis), the face encoder (causal 1-D convolutions over frames) and the
face adapter (per-frame cross-attention from video tokens to face tokens after every fifth block).

Parameter names are the published checkpoint's (``motion_encoder.enc.net_app.convs.N``,
``face_encoder.conv1_local.conv``, ``face_adapter.fuser_blocks.N``), so the file loads unchanged.
The widths inside the motion and face encoders are fixed by the checkpoint (512-pixel faces, 512
motion features, 4 face tokens of 1024 channels): only the DiT width and depth vary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Kernel, attention, sdpa
from .layers import RMSNorm

FACE_SIZE = 512  # face crops are resized to this square before the motion encoder
MOTION_DIM = 512
_MOTION_BASIS = 20
_FACE_TOKENS = 4
_FACE_WIDTH = 1024
_ENCODE_CHUNK = 8  # face frames through the motion encoder at a time (its activations are large)


# -- motion encoder -------------------------------------------------------------------------------
class EqualConv2d(nn.Module):
    """Conv2d whose weight is scaled by 1/sqrt(fan_in) at run time (equalized learning rate)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, k, k))
        self.bias = nn.Parameter(torch.empty(cout)) if bias else None
        self.scale = 1 / math.sqrt(cin * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, self.weight.to(x.dtype) * self.scale, b, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear with the weight scaled by 1/sqrt(in_features) at run time."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.empty(cout))
        self.scale = 1 / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype) * self.scale, self.bias.to(x.dtype))


class BiasLeakyReLU(nn.Module):
    """leaky_relu(x + bias, 0.2) * sqrt(2): StyleGAN's fused activation."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias.to(x.dtype), 0.2) * math.sqrt(2)


class Blur(nn.Module):
    """Depthwise [1, 3, 3, 1] x [1, 3, 3, 1] low-pass before a strided convolution (anti-aliasing).

    The kernel is a constant made per call (not a buffer, so a model built on the meta device
    needs nothing more); checkpoints that carry it (``...kernel``) are read without it."""

    def __init__(self, pad: tuple[int, int]):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=torch.float32)
        k = torch.outer(k, k)
        k = (k / k.sum()).to(x.dtype)  # symmetric: the flip of a true convolution changes nothing
        x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        return F.conv2d(x, k.expand(c, 1, 4, 4), groups=c)


def conv_layer(cin: int, cout: int, k: int, downsample: bool = False, activate: bool = True) -> nn.Sequential:
    """[Blur,] EqualConv2d[, BiasLeakyReLU] in the checkpoint's index order."""
    layers: list[nn.Module] = []
    if downsample:
        p = 2 + (k - 1)
        layers.append(Blur(((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(cin, cout, k, stride=2))
    else:
        layers.append(EqualConv2d(cin, cout, k, padding=k // 2))
    if activate:
        layers.append(BiasLeakyReLU(cout))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = conv_layer(cin, cin, 3)
        self.conv2 = conv_layer(cin, cout, 3, downsample=True)
        self.skip = conv_layer(cin, cout, 1, downsample=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class _AppearanceEncoder(nn.Module):
    """512x512 face -> one 512-vector: seven halvings down to 4x4, then a 4x4 convolution."""

    def __init__(self):
        super().__init__()
        widths = [32, 64, 128, 256, 512, 512, 512, 512]
        self.convs = nn.ModuleList(
            [conv_layer(3, 32, 1)] + [ResBlock(a, b) for a, b in zip(widths, widths[1:])]
            + [EqualConv2d(512, MOTION_DIM, 4)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return x.flatten(1)


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net_app = _AppearanceEncoder()
        self.fc = nn.Sequential(*[EqualLinear(MOTION_DIM, MOTION_DIM) for _ in range(4)],
                                EqualLinear(MOTION_DIM, _MOTION_BASIS))


class _Direction(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(MOTION_DIM, _MOTION_BASIS))

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        """[N, 20] motion coefficients -> [N, 512]: a combination of the orthonormalised basis."""
        w = self.weight.to(coeffs.device, coeffs.dtype)
        # the tiny identity keeps the QR defined when basis columns are (nearly) dependent
        w = w + 1e-8 * torch.eye(*w.shape, device=w.device, dtype=w.dtype)
        q, _ = torch.linalg.qr(w.float())
        return coeffs @ q.T.to(coeffs.dtype)


class _Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.direction = _Direction()


class MotionEncoder(nn.Module):
    """Face frames [N, 3, 512, 512] in -1..1 -> motion vectors [N, 512]."""

    def __init__(self):
        super().__init__()
        self.enc = _Encoder()
        self.dec = _Decoder()

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        out = [self.dec.direction(self.enc.fc(self.enc.net_app(chunk))) for chunk in faces.split(_ENCODE_CHUNK)]
        return torch.cat(out)


# -- face encoder ---------------------------------------------------------------------------------
class CausalConv1d(nn.Module):
    """Conv1d over frames that sees only the past (left padding by repeating the first frame)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.pad = k - 1
        self.conv = nn.Conv1d(cin, cout, k, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad, 0), mode="replicate"))


class FaceEncoder(nn.Module):
    """Motion vectors [B, T, 512] -> face tokens [B, T', 5, dim] (T' = frames after two stride-2
    convolutions, one latent frame each; 4 learned-from-motion tokens and a padding token)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1_local = CausalConv1d(MOTION_DIM, _FACE_WIDTH * _FACE_TOKENS)
        self.conv2 = CausalConv1d(_FACE_WIDTH, _FACE_WIDTH, stride=2)
        self.conv3 = CausalConv1d(_FACE_WIDTH, _FACE_WIDTH, stride=2)
        self.out_proj = nn.Linear(_FACE_WIDTH, dim)
        self.padding_tokens = nn.Parameter(torch.empty(1, 1, 1, dim))

    @staticmethod
    def _norm_act(x: torch.Tensor) -> torch.Tensor:
        return F.silu(F.layer_norm(x, x.shape[-1:], eps=1e-6))

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        b, t, _ = motion.shape
        x = self.conv1_local(motion.transpose(1, 2))  # [B, 4 * 1024, T]
        x = x.unflatten(1, (_FACE_TOKENS, _FACE_WIDTH)).flatten(0, 1).transpose(1, 2)  # [B * 4, T, 1024]
        x = self._norm_act(x)
        for conv in (self.conv2, self.conv3):
            x = self._norm_act(conv(x.transpose(1, 2)).transpose(1, 2))
        x = self.out_proj(x)  # [B * 4, T', dim]
        x = x.unflatten(0, (b, _FACE_TOKENS)).transpose(1, 2)  # [B, T', 4, dim]
        pad = self.padding_tokens.to(x.dtype).expand(b, x.shape[1], 1, -1)
        return torch.cat([x, pad], dim=2)


# -- face adapter ---------------------------------------------------------------------------------
class FaceBlock(nn.Module):
    """Each latent frame's video tokens attend to that frame's face tokens; the result is added to
    the residual stream by the caller. ``kernel``: the attention kernel, as in ``WanSelfAttention``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.kernel: Kernel = sdpa
        self.linear1_kv = nn.Linear(dim, 2 * dim)
        self.linear1_q = nn.Linear(dim, dim)
        self.linear2 = nn.Linear(dim, dim)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)

    def forward(self, x: torch.Tensor, face: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """x: [B, L, C] residual stream; face: [B, T, N, C] face tokens, L divisible by T -> [B, L, C]
        in ``dtype`` (the compute dtype)."""
        b, t, n, c = face.shape
        h, d = self.num_heads, self.head_dim
        kv = self.linear1_kv(F.layer_norm(face.to(dtype), (c,), eps=1e-6))
        q = self.linear1_q(F.layer_norm(x, (c,), eps=1e-6).to(dtype))
        k, v = kv.view(b * t, n, 2, h, d).unbind(2)
        q = self.q_norm(q.view(b * t, -1, h, d)).to(dtype)
        out = attention(q, self.k_norm(k).to(dtype), v, self.kernel)  # [B * T, L / T, C]
        return self.linear2(out.reshape(b, -1, c))


class FaceAdapter(nn.Module):
    def __init__(self, dim: int, num_heads: int, count: int):
        super().__init__()
        self.fuser_blocks = nn.ModuleList(FaceBlock(dim, num_heads) for _ in range(count))


def face_tokens(motion_encoder: MotionEncoder, face_encoder: FaceEncoder, faces: torch.Tensor,
                frames: int, dtype: torch.dtype) -> torch.Tensor:
    """Face video [B, 3, F, 512, 512] in -1..1 -> face tokens [B, frames, 5, dim]: the first latent
    frame (the reference image) gets zeros, later frames are cut or zero-padded to ``frames``."""
    b, _, f = faces.shape[:3]
    pixels = faces.to(dtype).transpose(1, 2).flatten(0, 1)  # [B * F, 3, 512, 512]
    motion = motion_encoder(pixels).unflatten(0, (b, f))
    tokens = face_encoder(motion)
    tokens = torch.cat([tokens.new_zeros(b, 1, *tokens.shape[2:]), tokens], dim=1)[:, :frames]
    if tokens.shape[1] < frames:
        tokens = torch.cat([tokens, tokens.new_zeros(b, frames - tokens.shape[1], *tokens.shape[2:])], dim=1)
    return tokens


def is_blur_constant(name: str) -> bool:
    """Whether a checkpoint name is one of the motion encoder's fixed blur kernels (not a weight)."""
    return name.startswith("motion_encoder.") and name.endswith(".kernel")
