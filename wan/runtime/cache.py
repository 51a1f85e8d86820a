"""Step caching (TeaCache): skip the DiT's block stack when its input has barely changed since the
last computed step, reusing that step's residual (output - input of the block stack).

The signal is the relative L1 change of a timestep-dependent input of the first block, accumulated
over skipped steps; a step is computed again once the accumulation reaches ``threshold``.
TeaCache4Wan2.1 (ali-vilab/TeaCache) uses the time projection ``e0`` (with its "retention steps"
polynomial) or the time embedding ``e``, and rescales the raw change by a polynomial fitted per
model; those coefficients are below. ``input="modulated"`` uses the first block's modulated,
normalised latent instead (TeaCache's original signal for other DiTs), with plain accumulation.

A ``StepCache`` is a DiT forward of one run, ``cache(step, x, t, context, **kw)``: the DiT call of
the denoiser chain goes through it with the sampler's ``Step``. Calls of one ``step.index`` belong
to one step, and the k-th call of a step (cond / uncond without batched CFG, context windows) keeps
its own cache, so each stream is compared with itself. The model itself is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import WanInputError
from ..finite import check_fields
from ..models.dit.layers import modulate
from ..sampling.step import Step

# TeaCache4Wan2.1 polynomial coefficients (highest power first), keyed by (model, input).
# "e0" goes with the official use_ret_steps=True setting, "e" with use_ret_steps=False.
COEFFICIENTS = {
    ("t2v_1.3B", "e0"): (-5.21862437e04, 9.23041404e03, -5.28275948e02, 1.36987616e01, -4.99875664e-02),
    ("t2v_14B", "e0"): (-3.03318725e05, 4.90537029e04, -2.65530556e03, 5.87365115e01, -3.15583525e-01),
    ("i2v_480p", "e0"): (2.57151496e05, -3.54229917e04, 1.40286849e03, -1.35890334e01, 1.32517977e-01),
    ("i2v_720p", "e0"): (8.10705460e03, 2.13393892e03, -3.72934672e02, 1.66203073e01, -4.17769401e-02),
    ("t2v_1.3B", "e"): (2.39676752e03, -1.31110545e03, 2.01331979e02, -8.29855975e00, 1.37887774e-01),
    ("t2v_14B", "e"): (-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404),
    ("i2v_480p", "e"): (-3.02331670e02, 2.23948934e02, -5.25463970e01, 5.87348440e00, -2.01973289e-01),
    ("i2v_720p", "e"): (-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683),
}
INPUTS = ("e0", "e", "modulated")
# Tokens per latent frame at 480x832 and 720x1280 (16x16 pixels per token); I2V picks the nearer.
_TOKENS_480P, _TOKENS_720P = 30 * 52, 45 * 80


@dataclass(frozen=True)
class CacheArgs:
    """Options of step caching (what the WanCacheArgs node returns).

    threshold: accumulated (rescaled) relative change below which a step is skipped; 0 disables.
    start_step / end_step: steps before ``start_step`` or after ``end_step`` (-1: the last step
    but one) are always computed. coefficients: "auto" (by model and size), or "none" (plain
    accumulation). offload_residuals: keep cached residuals on the offload device.
    """

    threshold: float = 0.2
    start_step: int = 1
    end_step: int = -1
    input: str = "e0"
    coefficients: str = "auto"
    offload_residuals: bool = False

    def __post_init__(self):
        check_fields(self, "cache")
        if self.threshold < 0:
            raise WanInputError(f"cache threshold must be >= 0, got {self.threshold}")
        if self.input not in INPUTS:
            raise WanInputError(f"cache input {self.input!r}: choose one of {', '.join(INPUTS)}")
        if self.coefficients not in ("auto", "none"):
            raise WanInputError(f"cache coefficients {self.coefficients!r}: choose 'auto' or 'none'")
        if self.start_step < 0 or (self.end_step >= 0 and self.end_step < self.start_step):
            raise WanInputError(f"cache steps: start_step {self.start_step}, end_step {self.end_step}")


@dataclass
class CacheStats:
    """How many DiT forwards were skipped out of how many were asked for."""

    skipped: int = 0
    total: int = 0

    def __str__(self) -> str:
        return f"step cache skipped {self.skipped} of {self.total} model calls"


@dataclass
class _Stream:
    prev: torch.Tensor | None = None
    accumulated: float = 0.0
    residual: torch.Tensor | None = None


def model_coefficients(cfg, grid: tuple[int, int, int], signal: str) -> tuple[float, ...] | None:
    """TeaCache4Wan2.1 coefficients for this model and token grid, None where none were fitted."""
    if signal not in ("e0", "e"):
        return None
    if cfg.dim == 1536:
        name = "t2v_1.3B"
    elif cfg.dim == 5120 and cfg.has_image_emb:
        per_frame = grid[1] * grid[2]
        name = "i2v_720p" if abs(per_frame - _TOKENS_720P) < abs(per_frame - _TOKENS_480P) else "i2v_480p"
    elif cfg.dim == 5120:
        name = "t2v_14B"
    else:
        return None
    return COEFFICIENTS[(name, signal)]


def _poly(coeffs, x: float) -> float:
    out = 0.0
    for c in coeffs:
        out = out * x + c
    return out


class StepCache:
    """The forward of ``dit`` for one sampling run with step caching; ``stats`` counts the skips."""

    def __init__(self, dit, args: CacheArgs, offload_device="cpu"):
        self.dit, self.args = dit, args
        self.offload_device = torch.device(offload_device)
        self.stats = CacheStats()
        self._step: int | None = None  # index of the step the last call belonged to
        self._call = 0  # calls of that step before this one
        self._streams: dict[int, _Stream] = {}  # one per call within a step (CFG's two passes)

    def _last_computed_step(self, step: Step) -> int:
        return self.args.end_step if self.args.end_step >= 0 else step.total - 2

    def _signal(self, state) -> torch.Tensor:
        if self.args.input == "e0":
            return state.e0
        if self.args.input == "e":
            return state.e
        block = self.dit.blocks[0]
        shift, scale = (block.modulation.float().unsqueeze(0) + state.e0)[:, :, :2].unbind(2)
        return modulate(block._norm(state.x), shift, scale, torch.float32)  # the first block's input

    def _should_compute(self, stream: _Stream, signal: torch.Tensor, step: Step, grid) -> bool:
        prev, stream.prev = stream.prev, signal
        if (self.args.threshold <= 0 or prev is None or prev.shape != signal.shape or stream.residual is None
                or step.index < self.args.start_step or step.index > self._last_computed_step(step)):
            stream.accumulated = 0.0
            return True
        change = ((signal - prev).abs().mean() / prev.abs().mean().clamp_min(1e-12)).item()
        coeffs = None if self.args.coefficients == "none" else model_coefficients(self.dit.cfg, grid, self.args.input)
        stream.accumulated += _poly(coeffs, change) if coeffs else change
        if stream.accumulated < self.args.threshold:
            return False
        stream.accumulated = 0.0
        return True

    def __call__(self, step: Step, x, t, context, clip_fea=None, y=None, vace_context=None, vace_strength=1.0,
                 **extra):
        dit = self.dit
        if step.index != self._step:
            self._step, self._call = step.index, 0
        else:
            self._call += 1
        stream = self._streams.setdefault(self._call, _Stream())
        state = dit.embed(x, t, context, clip_fea, y, vace_context, vace_strength, **extra)
        self.stats.total += 1
        if not self._should_compute(stream, self._signal(state), step, state.grid) \
                and stream.residual.shape == state.x.shape:
            self.stats.skipped += 1
            state.x = state.x + stream.residual.to(state.x.device)
            return dit.finish(state)
        before = state.x
        for i in range(len(dit.blocks)):
            dit.run_block(i, state)
        residual = state.x - before
        stream.residual = residual.to(self.offload_device) if self.args.offload_residuals else residual
        return dit.finish(state)
