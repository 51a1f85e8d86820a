"""LoRAs as trainers write them: ``formats`` (the key conventions in circulation), ``parse``
(a file -> a ``Lora`` matched against a model's tensors) and ``apply`` (a chain of LoRAs on a DiT
for one run, restored exactly). The names below are the public API; ``apply`` builds on ``parse``,
never the other way round."""

from .apply import LoraChain, LoraHandle, apply_loras, chain_add, merge_weight, no_match_message
from .parse import Diff, Lora, LowRank, MatchReport, load_lora

__all__ = ["Diff", "Lora", "LoraChain", "LoraHandle", "LowRank", "MatchReport", "apply_loras", "chain_add",
           "load_lora", "merge_weight", "no_match_message"]
