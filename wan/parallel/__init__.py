"""One video over several processes (GPUs): sequence parallelism (Ulysses, ring) and CFG parallelism
of the DiT on torch.distributed. See the README section "More than one GPU".

``layout.ParallelLayout`` (also ``RunOptions.parallel``); ``rank.run_rank`` / ``rank.RankJob``: the
per-process entry any launcher calls; ``job``: what ``sample_video`` enters; ``model``,
``attention``, ``groups``: the split itself; ``scaling``: communication volume and expected speed-up.
"""

from .layout import ParallelLayout

__all__ = ["ParallelLayout"]
