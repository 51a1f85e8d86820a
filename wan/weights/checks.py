"""The check every loader makes before an assign-load: the file's tensors against the model's own."""

from __future__ import annotations

import os

from torch import nn

from ..errors import WanFileError


def check_tensors(model: nn.Module, state_dict: dict, path: str | os.PathLike | None, what: str) -> None:
    """Raise WanFileError naming missing, unknown and wrongly shaped tensors of ``state_dict``.

    ``model`` may live on the meta device; only names and (logical) shapes are compared, so packed
    tensors are checked like any other. ``what`` names the model in the message.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {shape})"
             for k, shape in expected.items() if k in state_dict and tuple(state_dict[k].shape) != shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing, e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unknown tensor(s), e.g. {', '.join(unexpected[:3])}")
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong[:3])}")
    if problems:
        raise WanFileError(path, f"{what} does not match its own shapes: {'; '.join(problems)}. "
                                 "Truncated, merged or corrupt file?")
