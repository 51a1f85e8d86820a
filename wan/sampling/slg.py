"""Skip-layer guidance, as ComfyUI's ``SkipLayerGuidanceDiT`` node (comfy_extras/nodes_slg.py) runs
it on Wan: a third model pass on the positive conditioning with some transformer blocks skipped
(each skipped block passes its input through), and the CFG result pushed away from it:
``out = cfg_result + (x0_cond - x0_skip) * scale``, then, when ``rescaling_scale`` != 0, multiplied
by ``rescaling_scale * std(x0_cond) / std(out) + 1 - rescaling_scale``. All in x0 (denoised) terms.

It applies while the model's sigma lies in ``[percent_to_sigma(end_percent),
percent_to_sigma(start_percent)]``, ComfyUI's flow ``percent_to_sigma``: the shifted ``1 - percent``
(1 at percent 0, 0 at percent 1), with the run's shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import WanInputError
from ..finite import check_fields
from .schedules import shift_sigma
from .step import Step


@dataclass(frozen=True)
class SkipLayerGuidance:
    """layers: indices of the DiT blocks skipped in the guidance pass; scale: its strength (0: off);
    start_percent / end_percent: the part of the schedule where it applies; rescaling_scale: how
    much of the std rescale to apply (0: none). Defaults are the ComfyUI node's."""

    layers: tuple[int, ...] = (7, 8, 9)
    scale: float = 3.0
    start_percent: float = 0.01
    end_percent: float = 0.15
    rescaling_scale: float = 0.0

    def __post_init__(self):
        check_fields(self, "skip-layer guidance")
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.layers):
            raise WanInputError(f"skip-layer guidance layers must be block indices >= 0, got {self.layers!r}")
        if self.scale < 0 or self.rescaling_scale < 0:
            raise WanInputError(f"skip-layer guidance scale ({self.scale}) and rescaling_scale "
                                f"({self.rescaling_scale}) must be >= 0")
        if not 0.0 <= self.start_percent <= 1.0 or not 0.0 <= self.end_percent <= 1.0:
            raise WanInputError(f"skip-layer guidance percents must lie in [0, 1], got start {self.start_percent}, "
                                f"end {self.end_percent}")

    def check_model(self, num_layers: int) -> None:
        """WanInputError when a skipped layer is not a block of a model with ``num_layers`` blocks."""
        bad = [i for i in self.layers if i >= num_layers]
        if bad:
            raise WanInputError(f"skip-layer guidance layers {bad} do not exist: the model has blocks "
                                f"0..{num_layers - 1}")


def percent_to_sigma(percent: float, shift: float) -> float:
    """ComfyUI's ``ModelSamplingDiscreteFlow.percent_to_sigma`` (multiplier 1000)."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    return float(shift_sigma(1.0 - percent, shift))


def slg_active(args: SkipLayerGuidance, step: Step, shift: float) -> bool:
    """Whether the guidance pass runs at this step's sigma."""
    sigma = float(step.sigma)
    return args.scale > 0 and percent_to_sigma(args.end_percent, shift) <= sigma \
        <= percent_to_sigma(args.start_percent, shift)


def apply_slg(args: SkipLayerGuidance, cfg_result: torch.Tensor, x0_cond: torch.Tensor,
              x0_skip: torch.Tensor) -> torch.Tensor:
    """The CFG result (x0) pushed away from the skip-layer prediction ``x0_skip``."""
    out = cfg_result + (x0_cond - x0_skip) * args.scale
    if args.rescaling_scale != 0:
        factor = x0_cond.std() / out.std()
        out = out * (args.rescaling_scale * factor + (1 - args.rescaling_scale))
    return out


def skip_forward(dit, layers: tuple[int, ...]):
    """A DiT forward ``forward(step, x, t, context, **kw)`` through ``dit.embed``, the blocks not in
    ``layers`` skipped (their VACE blocks still run, as in ComfyUI) and ``dit.finish``."""
    skipped = frozenset(layers)

    def forward(step: Step, x, t, context, **kw):
        state = dit.embed(x, t, context, **kw)
        for i in range(len(dit.blocks)):
            dit.run_block(i, state, skip=i in skipped)
        return dit.finish(state)

    return forward
