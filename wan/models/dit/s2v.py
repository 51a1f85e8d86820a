"""The parts Wan 2.2 S2V (speech to video) adds to the DiT: the causal audio encoder (wav2vec2
hidden states -> audio tokens per latent frame), the audio injector (per-frame cross-attention from
video tokens to audio tokens after some blocks, with an adaptive norm from a global audio vector),
the control encoder (a pose/control video latent added to the patch tokens), the frame-pack
motioner (the previous clip's last latent frames at three compressions, as tokens after the video)
and the condition-type embedding added to video, reference and motion tokens.

Parameter names are the published checkpoint's (``casual_audio_encoder``, ``audio_injector``,
``cond_encoder``, ``frame_packer``, ``trainable_cond_mask``), so the file loads unchanged.

Token layout of one forward: [video | reference frame | motion tokens]. The timesteps follow the
reference code: one per latent frame, 0 for the reference frame, every entry doubled and three 0s
appended when motion tokens are present, then spread over the tokens in equal runs (the last run
may be short). ``token_timesteps`` reproduces that spread exactly and packs it into the fewest
equal runs, so the blocks' per-run modulation stays a [B, runs, 6, C] tensor.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import WanInputError
from .attention import _axis_angles, rope_axes
from .layers import WanCrossAttention, linear_fp32

AUDIO_TOKENS = 4  # audio tokens per latent frame (a fifth, learned padding token is appended)
AUDIO_PER_LATENT = 4  # audio embedding frames per latent frame (the video frame rate)
MOTION_BUCKETS = (1, 2, 16)  # latest to oldest motion latent frames at 1x, 2x, 4x compression
MOTION_FRAMES = sum(MOTION_BUCKETS)  # 19 latent frames = 73 video frames
_REF_MIN_FRAME = 30  # rotary frame of the reference: max(30, frames + 9)


@dataclass(frozen=True)
class SoundInputs:
    """What the S2V DiT takes besides noise and text, in the reference code's layouts.

    audio_embed: [B, layers, dim, frames] wav2vec2 hidden states, 4 frames per latent frame
    (ComfyUI's ``audio_embed``); reference: [B, 16, 1, h, w] normalised reference latent;
    motion: [B, 16, M, h, w] normalised latent of the previous frames (the last 19 are used);
    control: [B, 16, T, h, w] normalised control video latent. Any may be None.
    """

    audio_embed: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    motion: torch.Tensor | None = None
    control: torch.Tensor | None = None

    def silent(self) -> "SoundInputs":
        """The same inputs with zero audio: the negative pass (ComfyUI's ``audio_embed * 0``)."""
        a = self.audio_embed
        return self if a is None else dataclasses.replace(self, audio_embed=torch.zeros_like(a))

    def to(self, device) -> "SoundInputs":
        return SoundInputs(*(None if v is None else v.to(device=device, dtype=torch.float32)
                             for v in dataclasses.astuple(self)))


def _conv(conv: nn.Module, x: torch.Tensor, **kw) -> torch.Tensor:
    # the small input convolutions run in fp32 (they see raw latents and audio features)
    fn = {3: F.conv1d, 5: F.conv3d}[x.ndim]
    b = None if conv.bias is None else conv.bias.float()
    return fn(x.float(), conv.weight.float(), b, stride=conv.stride, **kw)


def _norm_act(x: torch.Tensor) -> torch.Tensor:
    return F.silu(F.layer_norm(x, x.shape[-1:], eps=1e-6))


class CausalConv1d(nn.Module):
    """Conv1d over time, left-padded by repeating the first frame (nothing from the future)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv(self.conv, F.pad(x.float(), (2, 0), mode="replicate"))


class AudioTokenEncoder(nn.Module):
    """[B, frames, audio_dim] -> local tokens [B, frames/4, 5, dim] (4 heads + padding token) and a
    global vector [B, frames/4, 1, dim] (two stride-2 causal convolutions: 4 audio frames per latent)."""

    def __init__(self, audio_dim: int, dim: int, tokens: int = AUDIO_TOKENS):
        super().__init__()
        self.tokens = tokens
        self.conv1_local = CausalConv1d(audio_dim, dim // 4 * tokens)
        self.conv1_global = CausalConv1d(audio_dim, dim // 4)
        self.conv2 = CausalConv1d(dim // 4, dim // 2, stride=2)
        self.conv3 = CausalConv1d(dim // 2, dim, stride=2)
        self.final_linear = nn.Linear(dim, dim)
        self.padding_tokens = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        # [N, C, T] after the first conv -> [N, T/4, dim]
        x = _norm_act(x.transpose(1, 2))
        x = _norm_act(self.conv2(x.transpose(1, 2)).transpose(1, 2))
        return _norm_act(self.conv3(x.transpose(1, 2)).transpose(1, 2))

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = feats.shape[0]
        x = feats.transpose(1, 2).float()  # [B, audio_dim, T]
        local = self.conv1_local(x)
        local = local.unflatten(1, (self.tokens, -1)).flatten(0, 1)  # [B * tokens, C, T]
        local = self._down(local)
        local = local.unflatten(0, (b, self.tokens)).transpose(1, 2)  # [B, t, tokens, dim]
        pad = self.padding_tokens.float().expand(b, local.shape[1], 1, -1)
        local = torch.cat([local, pad], dim=2)
        glob = linear_fp32(self.final_linear, self._down(self.conv1_global(x)))
        return local, glob[:, :, None]


class CausalAudioEncoder(nn.Module):
    """wav2vec2 hidden states of every layer, mixed by learned softmax-free weights, -> audio tokens."""

    def __init__(self, audio_dim: int, audio_layers: int, dim: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(1, audio_layers, 1, 1))
        self.encoder = AudioTokenEncoder(audio_dim, dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: [B, layers, audio_dim, frames] -> (local [B, f, 5, dim], global [B, f, 1, dim])."""
        w = F.silu(self.weights.float())
        mixed = (features.float() * w / w.sum(dim=1, keepdim=True)).sum(dim=1)
        return self.encoder(mixed.transpose(1, 2))


class AdaNorm(nn.Module):
    """LayerNorm (eps 1e-5, no affine) shifted and scaled by a projection of a conditioning vector."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = linear_fp32(self.linear, F.silu(cond.float())).chunk(2, dim=-1)
        return F.layer_norm(x.float(), x.shape[-1:], eps=1e-5) * (1 + scale[:, None]) + shift[:, None]


class AudioInjector(nn.Module):
    """After block ``INJECT_LAYERS[n]``: video tokens of each latent frame attend to that frame's
    audio tokens (query normed by ``AdaNorm`` from the frame's global audio vector)."""

    def __init__(self, dim: int, num_heads: int, layers: tuple[int, ...], eps: float = 1e-6):
        super().__init__()
        self.after = {layer: n for n, layer in enumerate(layers)}
        self.injector = nn.ModuleList(WanCrossAttention(dim, num_heads, eps) for _ in layers)
        self.injector_adain_layers = nn.ModuleList(AdaNorm(dim) for _ in layers)

    def forward(self, block: int, x: torch.Tensor, audio: tuple, dtype: torch.dtype) -> torch.Tensor:
        n = self.after.get(block)
        if n is None:
            return x
        local, glob, video = audio
        b, f = local.shape[:2]
        q = x[:, :video].reshape(b * f, video // f, x.shape[-1])
        q = self.injector_adain_layers[n](q, glob.flatten(0, 1)[:, 0]).to(dtype)
        out = self.injector[n](q, local.flatten(0, 1).to(dtype)).reshape(b, video, -1)
        x[:, :video] += out.to(x.dtype)  # x is the block's own new output
        return x


class FramePackMotioner(nn.Module):
    """The last 19 motion latent frames -> tokens: 1 frame at the patch size, 2 at 2x, 16 at 4x."""

    def __init__(self, dim: int, channels: int = 16):
        super().__init__()
        self.proj = nn.Conv3d(channels, dim, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.proj_2x = nn.Conv3d(channels, dim, kernel_size=(2, 4, 4), stride=(2, 4, 4))
        self.proj_4x = nn.Conv3d(channels, dim, kernel_size=(4, 8, 8), stride=(4, 8, 8))

    def forward(self, motion: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 16, M, h, w] -> (tokens [B, N, dim] fp32, rotary table of those tokens)."""
        b, c, m, h, w = motion.shape
        padded = motion.new_zeros(b, c, MOTION_FRAMES, h, w, dtype=torch.float32)
        n = min(m, MOTION_FRAMES)
        if n:
            padded[:, :, -n:] = motion[:, :, -n:].float()
        far, mid, near = padded.split(MOTION_BUCKETS[::-1], dim=2)
        hl, wl = (h + 1) // 2, (w + 1) // 2  # the video's token grid
        tokens, ropes = [], []
        for conv, frames, t0, t_len in ((self.proj, near, -1, 1), (self.proj_2x, mid, -3, 1),
                                        (self.proj_4x, far, -19, 4)):
            y = _conv(conv, frames)
            tokens.append(y.flatten(2).transpose(1, 2))
            # positions spread over the video's grid (a coarser patch covers more of it)
            ropes.append(rope_at(torch.linspace(t0, t0 + t_len - 1, y.shape[2]),
                                 torch.linspace(0, hl - 1, y.shape[3]), torch.linspace(0, wl - 1, y.shape[4]),
                                 head_dim, theta, motion.device))
        return torch.cat(tokens, dim=1), torch.cat(ropes, dim=1)


def rope_at(t_pos, h_pos, w_pos, head_dim: int, theta: float, device) -> torch.Tensor:
    """Rotary table (``attention.rope_table``'s layout) of a grid at the given per-axis positions,
    which may be fractional or negative."""
    device = torch.device(device)
    wide = torch.float32 if device.type == "mps" else torch.float64
    angles = [_axis_angles(p.to(device=device, dtype=wide), c, theta)
              for p, c in zip((t_pos, h_pos, w_pos), rope_axes(head_dim))]
    f, h, w = (a.shape[0] for a in angles)
    full = torch.cat([angles[0][:, None, None].expand(f, h, w, -1), angles[1][None, :, None].expand(f, h, w, -1),
                      angles[2][None, None, :].expand(f, h, w, -1)], dim=-1).reshape(f * h * w, head_dim // 2)
    cos, sin = full.cos(), full.sin()
    return torch.stack([cos, -sin, sin, cos], dim=-1).view(1, f * h * w, 1, head_dim // 2, 2, 2).float()


def token_timesteps(t: torch.Tensor, batch: int, frames: int, has_ref: bool, motion_tokens: int,
                    total: int) -> torch.Tensor:
    """Timesteps [B, runs] over ``total`` tokens split into equal runs, equal to the reference
    code's per-frame list spread over the tokens (see the module note)."""
    t = torch.as_tensor(t, dtype=torch.float32)
    if t.ndim == 0:
        t = t.expand(batch)
    per = t[:, None].expand(-1, frames) if t.ndim == 1 else t
    if per.ndim != 2 or per.shape[1] != frames:
        raise WanInputError(f"timesteps of shape {tuple(t.shape)}: the S2V model takes [B] or [B, frames={frames}]")
    per = per.expand(batch, -1)
    zeros = per.new_zeros
    if has_ref:
        per = torch.cat([per, zeros(batch, 1)], dim=1)
    if motion_tokens:
        per = torch.cat([per.repeat_interleave(2, dim=1), zeros(batch, 3)], dim=1)
    n = per.shape[1]
    if n == 1:
        return per
    run = total // n
    if run == 0 or (run == 1 and n != total):
        raise WanInputError(f"{n} timesteps for {total} tokens: the latent is too small for the S2V model")
    run = run if run * n == total else run + 1
    tok = per[:, torch.arange(total, device=per.device) // run]  # [B, total]
    edges = (tok[:, 1:] != tok[:, :-1]).any(dim=0).nonzero().flatten() + 1
    g = math.gcd(total, *edges.tolist())
    return tok[:, ::g]


def sound_tokens(dit, tokens: torch.Tensor, grid: tuple[int, int, int], size, t, sound: SoundInputs | dict | None,
                 batch: int):
    """S2V additions to the flattened patch tokens [B, L, C] (fp32): control latent, condition-type
    embedding, reference and motion tokens. -> (tokens, rope table, timesteps [B, runs], audio
    state for ``AudioInjector`` or None, tokens after the video's)."""
    sound = SoundInputs(**sound) if isinstance(sound, dict) else sound  # sample_video's batchable form
    sound = SoundInputs() if sound is None else sound.to(tokens.device)
    cfg, video = dit.cfg, tokens.shape[1]
    if sound.control is not None:
        control = sound.control
        if control.ndim != 5 or control.shape[1] != cfg.out_dim or tuple(control.shape[2:]) != tuple(size):
            raise WanInputError(f"S2V control latent of shape {tuple(control.shape)}: expected "
                                f"[B, {cfg.out_dim}, {size[0]}, {size[1]}, {size[2]}] (the video's latent)")
        tokens = tokens + _conv(dit.cond_encoder, dit._pad(control)).flatten(2).transpose(1, 2)
    kind = dit.trainable_cond_mask.weight.float()
    tokens = tokens + kind[0]
    parts, ropes = [tokens], [dit.rope(grid, tokens.device)]
    ref = sound.reference
    if ref is not None:
        if ref.ndim == 4:
            ref = ref[:, :, None]
        if ref.ndim != 5 or ref.shape[1] != cfg.out_dim:
            raise WanInputError(f"S2V reference latent of shape {tuple(ref.shape)}: expected [B, {cfg.out_dim}, 1, h, w]")
        r = _conv(dit.patch_embedding, dit._pad(ref))
        start = max(_REF_MIN_FRAME, size[0] + 9)
        parts.append(r.flatten(2).transpose(1, 2).expand(batch, -1, -1) + kind[1])
        ropes.append(rope_at(torch.arange(r.shape[2]) + start, torch.arange(r.shape[3]), torch.arange(r.shape[4]),
                             cfg.head_dim, cfg.rope_theta, tokens.device))
    motion_tokens = 0
    if sound.motion is not None:
        m = sound.motion
        if m.ndim != 5 or m.shape[1] != cfg.out_dim or tuple(m.shape[3:]) != tuple(size[1:]):
            raise WanInputError(f"S2V motion latent of shape {tuple(m.shape)}: expected [B, {cfg.out_dim}, frames, "
                                f"{size[1]}, {size[2]}] (the video's latent size)")
        if min(m.shape[3:]) < 8:
            raise WanInputError(f"S2V motion latent of {m.shape[3]}x{m.shape[4]}: the motion packer's coarsest patch "
                                "is 8x8 latent pixels, so the video must be at least 64x64")
        mt, mrope = dit.frame_packer(m, cfg.head_dim, cfg.rope_theta)
        parts.append(mt.expand(batch, -1, -1) + kind[2])
        ropes.append(mrope)
        motion_tokens = mt.shape[1]
    tokens = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
    tt = token_timesteps(t, batch, grid[0], ref is not None, motion_tokens, tokens.shape[1])
    audio = None
    if sound.audio_embed is not None:
        a = sound.audio_embed
        need = grid[0] * AUDIO_PER_LATENT
        if a.ndim != 4 or a.shape[2] != cfg.audio_dim or a.shape[1] != cfg.audio_layers:
            raise WanInputError(f"S2V audio embedding of shape {tuple(a.shape)}: expected [B, {cfg.audio_layers}, "
                                f"{cfg.audio_dim}, {need} frames] ({AUDIO_PER_LATENT} per latent frame)")
        local, glob = dit.casual_audio_encoder(a[..., :need])
        if local.shape[1] != grid[0]:
            raise WanInputError(f"the audio embedding covers {local.shape[1]} latent frames, the video {grid[0]}")
        audio = (local.expand(batch, -1, -1, -1), glob.expand(batch, -1, -1, -1), video)
    return tokens, torch.cat(ropes, dim=1), tt, audio, tokens.shape[1] - video


def add_sound_modules(dit) -> None:
    """The S2V modules on a WanDiT (official names)."""
    cfg = dit.cfg
    d, p = cfg.dim, cfg.patch_size
    dit.trainable_cond_mask = nn.Embedding(3, d)
    dit.casual_audio_encoder = CausalAudioEncoder(cfg.audio_dim, cfg.audio_layers, d)
    dit.cond_encoder = nn.Conv3d(cfg.out_dim, d, kernel_size=p, stride=p)
    dit.audio_injector = AudioInjector(d, cfg.num_heads, cfg.audio_inject_layers, cfg.eps)
    dit.frame_packer = FramePackMotioner(d, cfg.out_dim)
