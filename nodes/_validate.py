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

import functools
from typing import Callable

import torch

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


# ---- sockets: ComfyUI checks only that a socket's value is a link; any other JSON value (a number, a
# string, null) reaches the node function unchecked. One guard per node class, added at registration.

_WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# exactly the types JSON decodes to: node outputs are tensors, tuples, objects or dict subclasses
_JSON_TYPES = (type(None), bool, int, float, str, list, dict)


def socket_problem(name: str, kind: str, value) -> str | None:
    """The message for a value that cannot be what a ``kind`` socket carries, or None."""
    if kind == "LATENT":
        ok = isinstance(value, dict) and isinstance(value.get("samples"), torch.Tensor)
    elif kind == "AUDIO":
        ok = isinstance(value, dict) and isinstance(value.get("waveform"), torch.Tensor)
    elif kind == "AUDIO_ENCODER_OUTPUT":  # a dict (comfy/audio_encoders' encode_audio)
        ok = isinstance(value, dict) and "encoded_audio_all_layers" in value
    else:  # tensors, our own types, ComfyUI's model objects: never a bare JSON value
        ok = type(value) not in _JSON_TYPES
    if ok:
        return None
    shown = "nothing" if value is None else f"the value {str(value)[:40]!r}"
    return f"{name} must come from another node's {kind} output, got {shown}"


def _sockets(cls) -> dict[str, tuple[str, bool]]:
    """input name -> (socket type, required) of a node class (its widgets left out)."""
    types = cls.INPUT_TYPES()
    out = {}
    for group in ("required", "optional"):
        for name, spec in types.get(group, {}).items():
            kind = spec[0] if isinstance(spec, (tuple, list)) and spec else spec
            if isinstance(kind, str) and kind not in _WIDGET_TYPES and kind != "*":
                out[name] = (kind, group == "required")
    return out


def _check_sockets(sockets: dict, values: dict, lazy: bool = False) -> None:
    """None is "not connected": fine for an optional socket, and for any socket while lazy inputs
    are still unevaluated."""
    for name, (kind, required) in sockets.items():
        if name not in values or (values[name] is None and (lazy or not required)):
            continue
        if problem := socket_problem(name, kind, values[name]):
            raise WanInputError(problem)


def guard_sockets(cls):
    """Wrap ``cls``'s FUNCTION so a socket holding a bare value meets WanInputError naming the input."""
    method = getattr(cls, cls.FUNCTION)
    if getattr(method, "_socket_guard", False):
        return cls
    sockets = None

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        nonlocal sockets
        if sockets is None:
            sockets = _sockets(cls)
        _check_sockets(sockets, kwargs)
        return method(self, *args, **kwargs)

    guarded._socket_guard = True
    setattr(cls, cls.FUNCTION, guarded)

    lazy = getattr(cls, "check_lazy_status", None)
    if lazy is not None:  # runs first, with inputs not yet evaluated given as None
        @functools.wraps(lazy)
        def guarded_lazy(self, *args, **kwargs):
            nonlocal sockets
            if sockets is None:
                sockets = _sockets(cls)
            _check_sockets(sockets, kwargs, lazy=True)
            return lazy(self, *args, **kwargs)

        cls.check_lazy_status = guarded_lazy
    return cls
