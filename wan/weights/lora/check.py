"""How a chain of LoRAs meets one model, said once for the loader node, the sampler node, the CLI
and ``apply_loras``: one line per LoRA naming the model or expert it goes on, a warning (with the
plain reason, see ``fit``) when only part of it applies, and an error naming the file when none of
it does (a LoRA for another model), raised before anything is sampled."""

from __future__ import annotations

import logging
from typing import Callable

from ...errors import WanFileError
from ...notices import notify
from .formats import guess_foreign
from .parse import Lora, MatchReport

log = logging.getLogger(__name__)

# How the reports name the two Wan 2.2 A14B experts.
HIGH_NOISE = "the high-noise expert"
LOW_NOISE = "the low-noise expert"


def no_match_message(lora: Lora, report: MatchReport) -> str:
    where = report.expert or "this Wan DiT"
    if report.shape_mismatches and not report.unmatched:
        why = "; ".join(report.notes) or f"e.g. {report.shape_mismatches[0]}"
        return (f"0 of {report.total} LoRA patches fit {where}: the layer names match but the shapes do "
                f"not ({why}); it is a LoRA for another Wan size or variant (e.g. 1.3B vs 14B, 5B)")
    raws = [e.raw for e in lora.entries]
    foreign = guess_foreign(raws)
    what = f"it looks like a LoRA for {foreign}" if foreign else "it was made for another model"
    return (f"0 of {report.total} LoRA patches match {where}; {what} "
            f"(e.g. {', '.join(raws[:3])})")


def check_loras(model, chain, expert: str | None = None,
                say: Callable[[str], None] | None = None) -> list[MatchReport]:
    """Match each (Lora, strength) of ``chain`` against ``model`` (an nn.Module or {name: shape}).

    Logs one line per LoRA when all of it applies, else notifies it (``wan.notices``: the reason,
    for the user to see), and passes it to ``say`` too; raises WanFileError naming the file when none of a LoRA applies.
    ``expert``: the expert the chain goes on (HIGH_NOISE / LOW_NOISE), named in every line.
    """
    reports = []
    for lora, strength in chain:
        report = lora.match(model, expert)
        if report.matched == 0:
            raise WanFileError(lora.path, no_match_message(lora, report))
        line = f"Wan LoRA {lora.name} (strength {strength:g}): {report.describe()}"
        if report.complete:
            log.info(line)
        else:  # the user must see it, not only the console
            notify(line)
        if say is not None:
            say(line)
        reports.append(report)
    return reports


def refuse_unmatched(model, chain, expert: str | None = None) -> None:
    """WanFileError naming the file of the first LoRA of ``chain`` that matches nothing of ``model``
    ({name: shape} read from a file's header will do, so this runs before the model loads); logs
    nothing (``check_loras`` reports the matches once the model is there)."""
    for lora, _ in chain:
        report = lora.match(model, expert)
        if report.matched == 0:
            raise WanFileError(lora.path, no_match_message(lora, report))
