"""One validation per node, for widget values and linked values alike (not a node module).

ComfyUI calls VALIDATE_INPUTS with widget values only (a linked input arrives as None) and skips
its own min/max check for every input the function names; a linked value reaches only the node's
function. So each node has ONE rule, ``rule(**values) -> message | None`` built from the rules in
wan/ (wan.values, wan.video, wan.sampling.context; None values are not judged): VALIDATE_INPUTS
answers with ``validate(rule, ...)`` and the node's function starts with ``check_received(rule,
...)``, so a linked value meets the same words before any model work. A rule returns one message
(the first problem), never a list. ComfyUI itself (execution.validate_inputs, 0.3.75 and 0.8.0)
files a VALIDATE_INPUTS answer once under each input the function names, so a node names only
the inputs its rule reads.
"""

from __future__ import annotations

from typing import Callable

from ..wan.errors import WanInputError


def validate(rule: Callable[..., str | None], **values) -> bool | str:
    """VALIDATE_INPUTS's answer for widget ``values``: True, or the rule's one message."""
    return rule(**values) or True


def check_received(rule: Callable[..., str | None], **values) -> None:
    """At the top of a node's function: ``rule`` on the values the node received (linked ones
    included); WanInputError with the message VALIDATE_INPUTS gives for the same widget value."""
    problem = rule(**values)
    if problem:
        raise WanInputError(problem)
