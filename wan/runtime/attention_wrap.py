"""Run-scoped wrapping of a DiT's attention modules, shared by Enhance-A-Video and NAG: for one
run each chosen module's ``kernel`` is wrapped and a forward hook added, and both are undone when
the run ends, so the model itself is never changed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..errors import WanInputError


class AttentionWrap:
    """Subclasses give the modules to wrap, the wrapped kernel of each and the hook run after each
    module's forward; ``name`` says what is refused when it is already active on a model."""

    name = "an attention wrapper"

    def __init__(self):
        self._hooks: list = []
        self._kernels: list[tuple[nn.Module, Callable]] = []

    def modules(self) -> Iterable[nn.Module]:
        raise NotImplementedError

    def kernel_for(self, module: nn.Module, inner: Callable) -> Callable:
        raise NotImplementedError

    def after(self, module: nn.Module, args, output):
        return output

    def wrap(self, forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """The DiT forward of the run as the chain calls it (``forward(step, x, t, context, **kw)``)."""
        return forward

    def install(self) -> None:
        marker = f"_wan_{type(self).__name__}"
        for module in self.modules():
            if getattr(module.kernel, marker, False):
                raise WanInputError(f"{self.name} is already active on this model")
            # the kernels run Python per call (scores, bookkeeping): kept out of compiled graphs
            kernel = torch.compiler.disable(self.kernel_for(module, module.kernel))
            setattr(kernel, marker, True)
            self._kernels.append((module, module.kernel))
            module.kernel = kernel
            self._hooks.append(module.register_forward_hook(self.after))

    def remove(self) -> None:
        for module, kernel in self._kernels:
            module.kernel = kernel
        for hook in self._hooks:
            hook.remove()


def _unchanged(forward):
    return forward


@contextlib.contextmanager
def wrapped_for_run(wrapper: AttentionWrap | None):
    """Installs ``wrapper`` for the block and yields its ``wrap`` (None: nothing to install; yields
    a ``wrap`` that changes nothing)."""
    if wrapper is None:
        yield _unchanged
        return
    try:
        wrapper.install()
        yield wrapper.wrap
    finally:
        wrapper.remove()
