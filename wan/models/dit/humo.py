"""HuMo (ByteDance, text + image + audio on a Wan 2.1 DiT): the audio projection, the audio
cross-attention every block runs after its text cross-attention, and the reference latent frames
appended behind the video's tokens.

Official names: ``audio_proj.audio_proj_glob_{1,2,3}.layer`` and ``audio_proj.audio_proj_glob_norm.layer``
(whisper features -> 16 tokens per latent frame), ``blocks.N.audio_cross_attn_wrapper.norm1_audio`` and
``blocks.N.audio_cross_attn_wrapper.audio_cross_attn.{q,k,v,o,norm_q,norm_k}``.

Audio input: [B, F, 8, 5, 1280] per latent frame a window of 8 whisper frames x 5 layer groups
(``wan.job.conditioning_humo`` builds it). None means silence (zeros), which is what ComfyUI's
WanHuMoImageToVideo gives a run without audio and the negative pass.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import WanInputError
from .attention import attention, rope_table
from .layers import FP32LayerNorm, WanSelfAttention

AUDIO_WINDOW, AUDIO_GROUPS, WHISPER_DIM = 8, 5, 1280  # per latent frame: 8 whisper frames x 5 layer groups
AUDIO_DIM, AUDIO_TOKENS = 1536, 16  # audio tokens per latent frame and their width
_HIDDEN = 512
# The 17B model's conditioning channels when nothing else is given: a zero mask and the normalised
# latent of a blank video (its first and second latent frames differ: the causal VAE), the
# official HuMo constants.
_BLANK_FIRST = (0.8660, -0.4326, -0.0017, -0.4884, -0.5283, 0.9207, -0.9896, 0.4433, -0.5543, -0.0113, 0.5753,
                -0.6000, -0.8346, -0.3497, -0.1926, -0.6938)
_BLANK_SECOND = (1.0869, -1.2370, 0.0206, -0.4357, -0.6411, 2.0307, -1.5972, 1.2659, -0.8595, -0.4654, 0.9638,
                 -1.6330, -1.4310, -0.1098, -0.3856, -1.4583)
_BLANK_REST = (0.8642, -1.8583, 0.1577, 0.1350, -0.3641, 2.5863, -1.9670, 1.6065, -1.0475, -0.8678, 1.1734,
               -1.8138, -1.5933, -0.7721, -0.3289, -1.3745)
MASK_CHANNELS = 4


class _Layer(nn.Module):
    """A module under ``.layer`` (the official checkpoint nests each projection one level down)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class AudioProj(nn.Module):
    """[B, F, 8, 5, 1280] audio windows -> [B, F * 16, 1536] audio tokens, frames slowest."""

    def __init__(self, features: int = WHISPER_DIM):
        super().__init__()
        self.features = features  # the audio encoder's width (whisper large v3: 1280)
        self.audio_proj_glob_1 = _Layer(nn.Linear(AUDIO_WINDOW * AUDIO_GROUPS * features, _HIDDEN))
        self.audio_proj_glob_2 = _Layer(nn.Linear(_HIDDEN, _HIDDEN))
        self.audio_proj_glob_3 = _Layer(nn.Linear(_HIDDEN, AUDIO_TOKENS * AUDIO_DIM))
        self.audio_proj_glob_norm = _Layer(FP32LayerNorm(AUDIO_DIM))  # PyTorch's default eps, as trained

    def forward(self, audio: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        b, f = audio.shape[:2]
        x = audio.reshape(b * f, -1).to(dtype)
        x = F.relu(self.audio_proj_glob_1(x))
        x = F.relu(self.audio_proj_glob_2(x))
        x = self.audio_proj_glob_3(x).view(b * f, AUDIO_TOKENS, AUDIO_DIM)
        return self.audio_proj_glob_norm(x).reshape(b, f * AUDIO_TOKENS, AUDIO_DIM)


class AudioCrossAttention(WanSelfAttention):
    """Each latent frame's video tokens attend to that frame's 16 audio tokens (no rotary)."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__(dim, num_heads, eps)
        self.k = nn.Linear(AUDIO_DIM, dim)
        self.v = nn.Linear(AUDIO_DIM, dim)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        b, l, c = x.shape
        n, d = self.num_heads, self.head_dim
        frames = audio.shape[1] // AUDIO_TOKENS
        if l % frames:
            raise WanInputError(f"HuMo audio for {frames} latent frames does not divide the {l} video tokens")
        q = self.norm_q(self.q(x)).reshape(b * frames, l // frames, n, d)
        k = self.norm_k(self.k(audio)).reshape(b * frames, AUDIO_TOKENS, n, d)
        v = self.v(audio).reshape(b * frames, AUDIO_TOKENS, n, d)
        return self.o(attention(q, k, v, self.kernel).reshape(b, l, c))


class AudioCrossAttentionWrapper(nn.Module):
    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__()
        self.audio_cross_attn = AudioCrossAttention(dim, num_heads, eps)
        self.norm1_audio = FP32LayerNorm(dim, eps, elementwise_affine=True)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x: [B, L, C] residual stream; audio: [B, F * 16, 1536] compute dtype -> x + attention."""
        return x + self.audio_cross_attn(self.norm1_audio(x).to(audio.dtype), audio)


def blank_conditioning(x: torch.Tensor) -> torch.Tensor:
    """The 17B model's ``y`` for a [B, 16, F, H, W] latent: zero mask + blank-video latent."""
    b, _, f, h, w = x.shape
    latent = torch.tensor(_BLANK_REST, dtype=torch.float32).view(1, -1, 1, 1, 1).repeat(b, 1, f, h, w)
    latent[:, :, :1] = torch.tensor(_BLANK_FIRST).view(1, -1, 1, 1, 1)
    latent[:, :, 1:2] = torch.tensor(_BLANK_SECOND).view(1, -1, 1, 1, 1)
    return torch.cat([latent.new_zeros(b, MASK_CHANNELS, f, h, w), latent], dim=1).to(x.device)


def reference_input(reference: torch.Tensor, in_dim: int, out_dim: int) -> torch.Tensor:
    """A [B, 16, Fr, h, w] normalised reference latent -> the patch embedding's input: itself (1.7B)
    or, for the 17B model, zero noise + a mask of ones + the latent."""
    if reference.ndim != 5 or reference.shape[1] not in (out_dim, in_dim):
        raise WanInputError(f"HuMo reference latent of shape {tuple(reference.shape)}: expected "
                            f"[B, {out_dim}, frames, h, w]")
    if reference.shape[1] == in_dim:
        return reference
    b, _, f, h, w = reference.shape
    mask = reference.new_ones(b, MASK_CHANNELS, f, h, w)
    return torch.cat([reference.new_zeros(reference.shape), mask, reference], dim=1)


def audio_tokens(proj: AudioProj, audio: torch.Tensor | None, frames: int, extra: int, batch: int,
                 dtype: torch.dtype, device) -> torch.Tensor:
    """Audio windows for ``frames`` latent frames (None: silence) -> tokens, with silent windows for the
    ``extra`` reference frames behind them."""
    if audio is None:
        audio = torch.zeros(1, frames, AUDIO_WINDOW, AUDIO_GROUPS, proj.features)
    want = (AUDIO_WINDOW, AUDIO_GROUPS, proj.features)
    if audio.ndim != 5 or tuple(audio.shape[2:]) != want or audio.shape[1] != frames or audio.shape[0] not in (1, batch):
        raise WanInputError(f"HuMo audio embedding of shape {tuple(audio.shape)}: expected [B, {frames} latent "
                            f"frames, {', '.join(map(str, want))}] (Wan HuMo Embeds builds it for this length)")
    audio = audio.to(device=device, dtype=torch.float32)
    if extra:
        audio = torch.cat([audio, audio.new_zeros(audio.shape[0], extra, *want)], dim=1)
    return proj(audio, dtype).expand(batch, -1, -1)


def reference_rope(grid: tuple[int, int, int], head_dim: int, theta: float, start_frame: int, device) -> torch.Tensor:
    """Rotary table of reference tokens placed at frames ``start_frame``... (behind the video)."""
    return rope_table(grid, head_dim, theta, start=(start_frame, 0, 0), device=device)


def add_audio_layers(dit: nn.Module) -> None:
    """Give a HuMo DiT its audio projection and each block its audio cross-attention."""
    cfg = dit.cfg
    dit.audio_proj = AudioProj(cfg.audio_dim or WHISPER_DIM)
    for block in dit.blocks:
        block.audio_cross_attn_wrapper = AudioCrossAttentionWrapper(cfg.dim, cfg.num_heads, cfg.eps)


def add_humo_inputs(dit: nn.Module, state, audio: torch.Tensor | None, reference: torch.Tensor | None,
                    per_sample_t: bool) -> None:
    """Append the reference latent's tokens behind the video's (``state.suffix`` of them, dropped by
    ``finish``) and set ``state.humo_audio``: the audio tokens of every frame, silent for the reference's."""
    cfg, batch = dit.cfg, state.x.shape[0]
    extra = 0
    if reference is not None:
        if not per_sample_t:
            raise WanInputError("a HuMo reference image takes one timestep per sample, not per frame or token")
        ref = dit._conv_fp32(dit.patch_embedding, reference_input(reference.to(state.x.device), cfg.in_dim,
                                                                   cfg.out_dim))
        if ref.shape[0] not in (1, batch):
            raise WanInputError(f"HuMo reference latent for {ref.shape[0]} samples, the latent has {batch}")
        extra = ref.shape[2]
        rope = reference_rope(tuple(ref.shape[2:]), cfg.head_dim, cfg.rope_theta, state.grid[0], state.x.device)
        tokens = ref.flatten(2).transpose(1, 2).expand(batch, -1, -1).to(state.x.dtype)
        state.x = torch.cat([state.x, tokens], dim=1)
        state.rope = torch.cat([state.rope, rope], dim=1)
        state.suffix = tokens.shape[1]
    state.humo_audio = audio_tokens(dit.audio_proj, audio, state.grid[0], extra, batch, state.context.dtype,
                               state.x.device)
