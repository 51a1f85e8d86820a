"""LoRAs as trainers write them: ``formats`` (the key conventions in circulation), ``parse``
(a file -> a ``Lora`` matched against a model's tensors), ``fit`` and ``check`` (the match report
in plain words, per expert) and ``apply`` (a chain of LoRAs on a DiT
for one run, restored exactly). The names below are the public API; ``apply`` builds on ``parse``,
never the other way round."""

from .apply import LoraChain, LoraHandle, apply_loras, chain_add, device_bytes, merge_weight
from .check import HIGH_NOISE, LOW_NOISE, check_loras, no_match_message, refuse_unmatched
from .parse import MAX_DELTA, Diff, Lora, LowRank, MatchReport, check_strength, load_lora

__all__ = ["Diff", "HIGH_NOISE", "LOW_NOISE", "Lora", "LoraChain", "LoraHandle", "LowRank", "MatchReport",
           "apply_loras", "chain_add", "check_loras", "device_bytes", "check_strength", "MAX_DELTA", "load_lora", "merge_weight", "no_match_message", "refuse_unmatched"]
