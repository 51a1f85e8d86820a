"""The Wan diffusion transformer: one class for every variant (T2V, I2V, FLF2V, VACE, TI2V, Animate, Fun,
Phantom, S2V, HuMo).

``forward`` is ``embed`` -> ``run_block`` for each block -> ``finish``; wrappers (block swap,
caching, skipping) call those three pieces themselves instead of copying the loop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .state import DiTState, sinusoidal_embedding
from .animate import FaceAdapter, FaceBlock, FaceEncoder, MotionEncoder, face_tokens
from .config import FACE_EVERY, DiTConfig
from ...errors import WanInputError
from ...runtime.cancel import check as check_cancel
from .attention import rope_table
from .attention_select import attention_kernel
from .camera import CameraAdapter, reference_tokens
from .phantom import join_subject
from .s2v import SoundInputs, add_sound_modules, sound_tokens
from .humo import add_audio_layers, add_humo_inputs, blank_conditioning
from .layers import Head, MLPProj, WanAttentionBlock, WanSelfAttention, linear_fp32
from .vace import VaceWanAttentionBlock

_FLOAT_COMPUTE = (torch.float32, torch.float16, torch.bfloat16)


class WanDiT(nn.Module):
    """Wan DiT. Parameters carry the official names; ``cfg`` fixes which optional parts exist."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        # None: follow the dtype of the text embedding weights (see ``compute_dtype``).
        self.dtype_override: torch.dtype | None = None
        # True keeps the residual stream in fp32 as the official code does (its autocast promotes
        # it); False keeps it in the compute dtype like ComfyUI and diffusers: ~2% faster on an
        # H100 and a 10-15% smaller activation peak. Norms, modulation and head are fp32 either way.
        self.residual_fp32 = False
        d, p = cfg.dim, cfg.patch_size
        self.patch_embedding = nn.Conv3d(cfg.in_dim, d, kernel_size=p, stride=p)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(
            WanAttentionBlock(d, cfg.ffn_dim, cfg.num_heads, cfg.eps, image_path=cfg.has_image_emb)
            for _ in range(cfg.num_layers)
        )
        self.head = Head(d, math.prod(p) * cfg.out_dim, cfg.eps)
        if cfg.has_image_emb:
            self.img_emb = MLPProj(cfg.img_dim, d, cfg.flf_pos_tokens if cfg.has_flf_pos_emb else None)
        if cfg.vace_layers:
            self.vace_blocks = nn.ModuleList(
                VaceWanAttentionBlock(d, cfg.ffn_dim, cfg.num_heads, cfg.eps, block_id=i)
                for i in range(len(cfg.vace_layers))
            )
            self.vace_patch_embedding = nn.Conv3d(cfg.vace_in_dim, d, kernel_size=p, stride=p)
        if cfg.camera_in_dim:
            self.control_adapter = CameraAdapter(cfg.camera_in_dim, d, p[1:])
        if cfg.ref_in_dim:
            self.ref_conv = nn.Conv2d(cfg.ref_in_dim, d, kernel_size=p[1:], stride=p[1:])
        self._vace_after = {layer: n for n, layer in enumerate(cfg.vace_layers)}
        if cfg.is_animate:
            self.pose_patch_embedding = nn.Conv3d(cfg.out_dim, d, kernel_size=p, stride=p)
            self.motion_encoder = MotionEncoder()
            self.face_adapter = FaceAdapter(d, cfg.num_heads, cfg.face_blocks)
            self.face_encoder = FaceEncoder(d)
        if cfg.is_s2v:
            add_sound_modules(self)
        if cfg.is_humo:
            add_audio_layers(self)
        # Animate: face tokens of the face videos seen inside ``face_memo`` (they do not change
        # between the steps of a run; the motion encoder is the costliest part of a forward)
        self._face_memo: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None
        # The rotary table depends only on the token grid; a sampler calls with the same grid at
        # every step, so the last one is kept (a plain attribute: not part of the state dict).
        self._rope_cache: tuple[tuple, torch.Tensor] | None = None

    # ----------------------------------------------------------------------------------------
    @property
    def compute_dtype(self) -> torch.dtype:
        """Dtype of the Linear inputs: the override if set, else the text embedding's weights."""
        if self.dtype_override is not None:
            return self.dtype_override
        dt = self.text_embedding[0].weight.dtype
        return dt if dt in _FLOAT_COMPUTE else torch.bfloat16

    @property
    def residual_dtype(self) -> torch.dtype:
        return torch.float32 if self.residual_fp32 else self.compute_dtype

    def set_attention(self, mode: str, device: torch.device | str | None = None) -> None:
        """Run every attention of this model (VACE blocks included) with the kernel of ``mode``
        (see ``attention_backends.ATTENTION_MODES``) on ``device``, where it will compute;
        WanInputError, and no change, if it is unknown, its package is missing or the GPU is too old."""
        kernel = attention_kernel(mode, device)
        for m in self.modules():
            if isinstance(m, (WanSelfAttention, FaceBlock)):
                m.kernel = kernel

    def rope(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """Rotary table of a token grid (see ``attention.rope_table``), cached for the last grid."""
        key = (tuple(grid), torch.device(device))
        if self._rope_cache is None or self._rope_cache[0] != key:
            self._rope_cache = (key, rope_table(grid, self.cfg.head_dim, self.cfg.rope_theta, device=device))
        return self._rope_cache[1]

    def _conv_fp32(self, conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        # The patch embeddings are small; running them in fp32 keeps the input latents exact.
        b = None if conv.bias is None else conv.bias.float()
        return F.conv3d(x.float(), conv.weight.float(), b, stride=conv.stride)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        # Latents not divisible by the patch are padded circularly and cropped again in `finish`,
        # as ComfyUI does, so odd latent sizes still work.
        pad = []
        for size, p in zip(reversed(x.shape[2:]), reversed(self.cfg.patch_size)):
            pad += [0, (-size) % p]
        return F.pad(x, pad, mode="circular") if any(pad) else x

    def _timesteps(self, t: torch.Tensor, batch: int, grid: tuple[int, int, int]) -> torch.Tensor:
        """Timesteps as [B, T] with T = 1 (per sample), frames or tokens (Wan2.2 TI2V)."""
        f, h, w = grid
        t = torch.as_tensor(t)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim == 1:
            t = t[:, None]
        if t.ndim != 2 or t.shape[0] not in (1, batch) or t.shape[1] not in (1, f, f * h * w):
            raise WanInputError(
                f"timesteps of shape {tuple(t.shape)}: expected [B], [B, frames={f}] or [B, tokens={f * h * w}]"
            )
        t = t.expand(batch, -1)
        if t.shape[1] == f * h * w and h * w > 1:
            per_frame = t.reshape(batch, f, h * w)
            # Per-token timesteps that are constant within each frame (the TI2V case) need only
            # per-frame modulation, which saves a [B, tokens, 6, dim] tensor.
            if bool((per_frame == per_frame[:, :, :1]).all()):
                t = per_frame[:, :, 0]
        return t

    # ----------------------------------------------------------------------------------------
    def embed(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        clip_fea: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        vace_context: torch.Tensor | None = None,
        vace_strength: float | Sequence[float] = 1.0,
        pose_latents: torch.Tensor | None = None,
        face_pixels: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
        subject: torch.Tensor | None = None,
        sound: SoundInputs | None = None,
        audio_embed: torch.Tensor | None = None,
        reference_latent: torch.Tensor | None = None,
    ) -> DiTState:
        """Inputs of ``forward`` -> the state the blocks run on."""
        cfg, dt = self.cfg, self.compute_dtype
        size = tuple(x.shape[2:])
        if y is None and cfg.is_humo and cfg.cond_channels:
            y = blank_conditioning(x)
        if y is not None:
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        if x.shape[1] != cfg.in_dim:
            raise WanInputError(
                f"{self.cfg.variant}: latent + conditioning has {x.shape[1]} channels, the model takes "
                f"{cfg.in_dim} ({cfg.out_dim} noise + {cfg.cond_channels} conditioning `y`)"
            )
        if subject is not None:  # Phantom: extra frames after the video's, cut off in finish
            x = join_subject(x, subject, cfg.variant)
        batch = x.shape[0]
        tokens = self._conv_fp32(self.patch_embedding, self._pad(x))  # [B, C, f, h, w]
        if cfg.is_animate and pose_latents is not None:
            tokens = self._add_pose(tokens, pose_latents)
        elif pose_latents is not None or face_pixels is not None:
            raise WanInputError(f"{cfg.variant}: pose and face videos are inputs of the Animate model only")
        grid = tuple(tokens.shape[2:])
        if camera is not None and cfg.camera_in_dim:
            tokens = tokens + self.control_adapter(camera.to(x.device), grid)
        tokens = tokens.flatten(2).transpose(1, 2)  # [B, L, C]
        rope_grid, prefix = grid, 0
        if reference is not None and cfg.ref_in_dim:
            # one frame of tokens in front, at rotary frame 0 (the video's frames move up by one)
            ref = reference_tokens(self.ref_conv, reference.to(x.device), batch, grid)
            tokens, rope_grid, prefix = torch.cat([ref, tokens], dim=1), (grid[0] + 1,) + grid[1:], ref.shape[1]
        rope = audio = suffix = None
        if cfg.is_s2v:
            tokens, rope, tt, audio, suffix = sound_tokens(self, tokens, grid, size, torch.as_tensor(t, device=x.device), sound, batch)
        elif sound is not None:
            raise WanInputError(f"{cfg.variant}: audio, control and motion latents (S2V) are inputs of the S2V model only")
        tokens = tokens.to(self.residual_dtype).contiguous()

        if rope is None:
            tt = self._timesteps(torch.as_tensor(t, device=x.device), batch, grid)
        if prefix and tt.shape[1] > 1:
            raise WanInputError("a reference image (Fun reference conv) takes one timestep per sample, "
                                 "not per frame or token")
        emb = sinusoidal_embedding(cfg.freq_dim, tt.flatten())
        e = linear_fp32(self.time_embedding[2], F.silu(linear_fp32(self.time_embedding[0], emb)))
        e0 = linear_fp32(self.time_projection[1], F.silu(e))
        e = e.view(batch, tt.shape[1], cfg.dim)
        e0 = e0.view(batch, tt.shape[1], 6, cfg.dim)

        if context.shape[1] < cfg.text_len:
            context = F.pad(context, (0, 0, 0, cfg.text_len - context.shape[1]))
        context = self.text_embedding(context.to(dt))
        context_img_len = 0
        if clip_fea is not None and cfg.has_image_emb:
            context = torch.cat([self.img_emb(clip_fea, dt), context], dim=1)
            context_img_len = clip_fea.shape[1]

        state = DiTState(tokens, e, e0, context, context_img_len, self.rope(rope_grid, x.device) if rope is None
                         else rope, grid, size, prefix=prefix, audio=audio, suffix=suffix or 0)
        if cfg.vace_layers:
            self._embed_vace(state, vace_context, vace_strength, batch)
        if face_pixels is not None:
            state.face = self._face(face_pixels, grid[0], batch)
        if cfg.is_humo:
            add_humo_inputs(self, state, audio_embed, reference_latent, tt.shape[1] == 1)
        return state

    def _add_pose(self, tokens: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        # Pose latents cover the video frames, not the reference frame in front of them.
        if pose.ndim != 5 or pose.shape[1] != self.cfg.out_dim or pose.shape[0] not in (1, tokens.shape[0]):
            raise WanInputError(f"pose_latents of shape {tuple(pose.shape)}: expected [B, {self.cfg.out_dim}, F, H, W]")
        pose = self._conv_fp32(self.pose_patch_embedding, self._pad(pose))
        if pose.shape[3:] != tokens.shape[3:]:
            raise WanInputError(f"pose latent grid {tuple(pose.shape[2:])} differs from the latent's {tuple(tokens.shape[2:])}")
        n = min(pose.shape[2], tokens.shape[2] - 1)
        tokens[:, :, 1:n + 1] += pose[:, :, :n]  # tokens is the patch embedding's own new tensor
        return tokens

    def _face(self, faces: torch.Tensor, frames: int, batch: int) -> torch.Tensor:
        if faces.ndim != 5 or faces.shape[1] != 3 or faces.shape[0] not in (1, batch):
            raise WanInputError(f"face_pixels of shape {tuple(faces.shape)}: expected [B, 3, frames, 512, 512]")
        memo, key = self._face_memo, id(faces)
        hit = None if memo is None else memo.get(key)
        if hit is not None and hit[0] is faces:
            tokens = hit[1]
        else:
            tokens = face_tokens(self.motion_encoder, self.face_encoder, faces, frames, self.compute_dtype)
            if memo is not None:
                memo[key] = (faces, tokens)  # the tensor held, so its id stays unique while memoized
        return tokens.expand(batch, -1, -1, -1)

    @contextlib.contextmanager
    def face_memo(self):
        """Within: the face tokens of each face video are computed once (a run's weights and face
        videos do not change between its steps); the memo is dropped on exit."""
        outer = self._face_memo
        self._face_memo = {} if outer is None else outer
        try:
            yield self
        finally:
            self._face_memo = outer

    def _embed_vace(self, state: DiTState, vace_context, vace_strength, batch: int) -> None:
        if vace_context is None:
            return
        if vace_context.ndim == 5:
            vace_context = vace_context[:, None]
        if vace_context.ndim != 6 or vace_context.shape[2] != self.cfg.vace_in_dim:
            raise WanInputError(
                f"vace_context of shape {tuple(vace_context.shape)}: expected [B, {self.cfg.vace_in_dim}, F, H, W]"
            )
        n = vace_context.shape[1]
        strength = (float(vace_strength),) * n if isinstance(vace_strength, (int, float)) else tuple(vace_strength)
        if len(strength) != n:
            raise WanInputError(f"{len(strength)} VACE strengths for {n} VACE contexts")
        state.vace = []
        for i in range(n):
            c = self._conv_fp32(self.vace_patch_embedding, self._pad(vace_context[:, i]))
            if tuple(c.shape[2:]) != state.grid:
                raise WanInputError(f"vace_context grid {tuple(c.shape[2:])} differs from the latent's {state.grid}")
            state.vace.append(c.flatten(2).transpose(1, 2).to(state.x.dtype).expand(batch, -1, -1))
        state.x0 = state.x
        state.vace_strength = strength

    def run_block(self, i: int, state: DiTState, skip: bool = False) -> None:
        """Run block ``i`` (and the VACE block that follows it, if any) on ``state.x`` in place.
        ``skip``: block ``i`` passes its input through, its VACE block still runs (skip-layer
        guidance, as ComfyUI's block replacement does). The job's cancel hook is polled first: every
        loop over the blocks (forward, block swap, step cache, skip-layer guidance) runs through here."""
        check_cancel(f"before DiT block {i + 1} of {len(self.blocks)}")
        if not skip:
            state.x = self.blocks[i](state.x, state.e0, state.rope, state.context, state.context_img_len,
                                     state.humo_audio)
        n = self._vace_after.get(i)
        if n is not None and state.vace is not None:
            block = self.vace_blocks[n]
            for j, c in enumerate(state.vace):
                hint, state.vace[j] = block.forward_vace(
                    c, state.x0, state.e0, state.rope, state.context, state.context_img_len
                )
                state.x = state.x + hint * state.vace_strength[j]
        if state.face is not None and i % FACE_EVERY == 0:
            # after the block even when it is skipped: the adapter is not part of the block
            fuser = self.face_adapter.fuser_blocks[i // FACE_EVERY]
            state.x = state.x + fuser(state.x, state.face, state.context.dtype).to(state.x.dtype)
        if state.audio is not None:
            state.x = self.audio_injector(i, state.x, state.audio, state.context.dtype)

    def finish(self, state: DiTState) -> torch.Tensor:
        """Head and unpatchify -> [B, out_dim, F, H, W] fp32."""
        out = self.head(state.x[:, state.prefix:] if state.prefix else state.x, state.e)
        if state.suffix:
            out = out[:, :-state.suffix]
        b, c = out.shape[0], self.cfg.out_dim
        (f, h, w), (pt, ph, pw) = state.grid, self.cfg.patch_size
        out = out.view(b, f, h, w, pt, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        out = out.reshape(b, c, f * pt, h * ph, w * pw)
        nf, nh, nw = state.size
        return out[:, :, :nf, :nh, :nw]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        clip_fea: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        vace_context: torch.Tensor | None = None,
        vace_strength: float | Sequence[float] = 1.0,
        pose_latents: torch.Tensor | None = None,
        face_pixels: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
        subject: torch.Tensor | None = None,
        sound: SoundInputs | None = None,
        audio_embed: torch.Tensor | None = None,
        reference_latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One denoiser evaluation (flow prediction).

        x: [B, out_dim, F, H, W] noisy latent; t: [B] timesteps on the 1000 scale (TI2V also
        [B, F] per frame or [B, F*H*W/4] per token); context: [B, L<=text_len, text_dim] text
        embeddings (zero-padded here to text_len); clip_fea: [B, 257 or 514, 1280] CLIP tokens
        (I2V/FLF2V; without it the image path is skipped); y: [B, in_dim - out_dim, F, H, W]
        conditioning (I2V); vace_context: [B, 96, F, H, W] or [B, N, 96, F, H, W] with one
        strength per context; Animate: pose_latents [B, 16, F - 1, H, W] (normalized, the frames
        after the reference) and face_pixels [B, 3, frames, 512, 512] in -1..1; camera: [B, 24, F, 8H, 8W]
        Plücker embedding at pixel size (Fun camera models); reference: [B, 16, H, W] normalised reference latent (Fun reference conv).
        subject: [1 or B, 16, S, H, W] normalised subject latent frames (Phantom), not in the output;
        sound: the S2V model's audio / reference / motion / control inputs (``s2v.SoundInputs``);
        HuMo: audio_embed [B, F, 8, 5, 1280] whisper windows (None: silence), reference_latent [B, 16, Fr, H, W].
        Returns [B, out_dim, F, H, W] fp32.
        """
        state = self.embed(x, t, context, clip_fea, y, vace_context, vace_strength, pose_latents=pose_latents,
                           face_pixels=face_pixels, camera=camera, reference=reference,
                           subject=subject, sound=sound, audio_embed=audio_embed, reference_latent=reference_latent)
        for i in range(len(self.blocks)):
            self.run_block(i, state)
        return self.finish(state)


__all__ = ["WanDiT"]
