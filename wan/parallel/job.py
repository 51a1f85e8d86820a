"""A sampling run over a ``ParallelLayout``: the checks that run before any model work, the groups
of the layout (made once per layout and world), and the context that splits every expert's forward.
``sample_video`` enters ``parallel_run`` when ``RunOptions.parallel`` asks for more than one process."""

from __future__ import annotations

import contextlib

import torch.distributed as dist

from ..errors import WanInputError
from .groups import ParallelGroups
from .layout import ParallelLayout
from .model import use_parallel

_GROUPS: dict[tuple, ParallelGroups] = {}


def world_size() -> int:
    """Processes of the initialised torch.distributed world (1 when there is none)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def check_parallel(layout: ParallelLayout, models, run) -> None:
    """WanInputError for a layout this run cannot take: a world of another size, a Ulysses degree
    that does not divide a model's heads, options whose numbers span all tokens of a forward."""
    if layout.size > 1 and world_size() == 1:
        raise WanInputError(f"parallel layout {layout.spec()} needs {layout.size} processes: start them with "
                            f"`torchrun --nproc-per-node {layout.size} -m wan generate ... --parallel "
                            f"{layout.spec()}` (or wan.parallel.run_rank), this process is alone")
    layout.check_world(world_size())
    for model in models:
        cfg = getattr(model, "cfg", None)
        if cfg is None:
            raise WanInputError(f"parallel runs need a Wan DiT, got {type(model).__name__}")
        layout.check_heads(cfg.num_heads, cfg.variant)
    if run.feta is not None and run.feta.weight != 0:
        raise WanInputError("Enhance-A-Video scores attention over all tokens and the whole batch; it cannot run "
                            "with a parallel layout (drop --feta or --parallel)")
    if run.cache is not None and run.cache.input == "modulated" and layout.sequence > 1:
        raise WanInputError("step cache input 'modulated' compares all tokens of a forward; with sequence "
                            "parallelism use input 'e0' or 'e'")


def groups_for(layout: ParallelLayout) -> ParallelGroups:
    """The groups of ``layout`` over the current world, made once (group creation is collective)."""
    key = (layout, id(dist.group.WORLD), world_size())
    if key not in _GROUPS:
        _GROUPS[key] = ParallelGroups.build(layout)
    return _GROUPS[key]


def forget_groups() -> None:
    """Drop the cached groups (before ``destroy_process_group``)."""
    _GROUPS.clear()


@contextlib.contextmanager
def parallel_run(layout: ParallelLayout | None, models, run):
    """Within the block every forward of ``models`` runs split as ``layout`` says (nothing changes
    for None or a layout of one process)."""
    if layout is None or layout.size == 1:
        yield
        return
    check_parallel(layout, models, run)
    groups = groups_for(layout)
    with contextlib.ExitStack() as stack:
        for model in dict.fromkeys(models):  # one context per distinct expert
            stack.enter_context(use_parallel(model, groups))
        yield
