"""Block swap: keep some DiT blocks in (pinned) host memory and bring each to the GPU only to run it.

The swapped blocks are the LAST ``blocks_to_swap`` of ``dit.blocks``, so that the first of them can
be copied while the last resident block still computes. A forward pre-hook on block ``i`` makes
sure block ``i`` is on the device (waiting for its copy) and, with ``prefetch``, starts copying
block ``i + 1`` on a side CUDA stream; a forward hook on a swapped block points its parameters back
at the host copies, which frees the device memory (weights never change during inference, so
nothing is copied back). Packed GGUF / fp8 weights are buffers of ``PackedLinear`` and travel as
their packed bytes. Results are bit-identical to running without swapping: only where the same
numbers live changes.

``offload_embeddings`` treats the text embedding and the CLIP image projection the same way (they
run once per forward and hold ~100 MB at 14B size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import WanInputError

AUTO = "auto"


@dataclass(frozen=True)
class BlockSwapArgs:
    """Options of ``enable_block_swap`` (what the WanBlockSwapArgs node returns).

    ``blocks_to_swap``: a number of blocks, or "auto" (the default): each job's memory plan
    (``wan.runtime.plan``) chooses it from the device's free memory and the job's size."""

    blocks_to_swap: int | str = AUTO
    offload_embeddings: bool = False
    prefetch: bool = True

    def __post_init__(self):
        n = self.blocks_to_swap
        if n == AUTO:
            return
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise WanInputError(f"blocks_to_swap must be {AUTO!r} or a number >= 0, got {n!r}")

    @property
    def auto(self) -> bool:
        return self.blocks_to_swap == AUTO


def _tensor_slots(module: nn.Module) -> list[tuple[nn.Module, str, bool]]:
    """(owner, name, is_parameter) for every parameter and buffer under ``module``."""
    slots = []
    for owner in module.modules():
        slots += [(owner, n, True) for n, p in owner._parameters.items() if p is not None]
        slots += [(owner, n, False) for n, b in owner._buffers.items() if b is not None]
    return slots


def _get(owner: nn.Module, name: str, is_param: bool) -> torch.Tensor:
    return owner._parameters[name] if is_param else owner._buffers[name]


def _put(owner: nn.Module, name: str, is_param: bool, value: torch.Tensor) -> None:
    # Parameters keep their identity (optimizers, compiled graphs and LoRA hold the object);
    # only the storage behind them changes.
    if is_param:
        owner._parameters[name].data = value
    else:
        owner._buffers[name] = value


class _Swapped:
    """One swappable module: its tensor slots and their host copies."""

    def __init__(self, module: nn.Module, offload: torch.device, pin: bool):
        self.module = module
        self.slots = _tensor_slots(module)
        self.host = []
        for slot in self.slots:
            t = _get(*slot).detach()
            h = t.to(offload)
            if pin and h.device.type == "cpu" and not h.is_pinned():
                h = h.pin_memory()
            self.host.append(h)
            _put(*slot, h)
        self.event = None
        self.resident = False


class BlockSwapper:
    """Handle returned by ``enable_block_swap``; ``remove()`` takes the hooks off again.

    ``resident_blocks()`` lists the swapped blocks currently on the device (tests use it to check
    that a block is only there while it runs, plus the one being prefetched).
    """

    def __init__(self, dit: nn.Module, blocks_to_swap: int, device, offload_device, prefetch: bool,
                 offload_embeddings: bool, simulate: bool = False):
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self.prefetch = prefetch
        self.loads = 0
        self._hooks: list = []
        n_blocks = len(dit.blocks)
        if not 0 <= blocks_to_swap <= n_blocks:
            raise WanInputError(f"blocks_to_swap={blocks_to_swap}: the model has {n_blocks} blocks")
        self.active = (blocks_to_swap > 0 or offload_embeddings) and (simulate or self.device != self.offload_device)
        if not self.active:
            dit.to(self.device)
            self.blocks: dict[int, _Swapped] = {}
            return
        # simulate: device == offload device (CPU tests); "copies" are clones so residency is visible
        self._simulate = self.device == self.offload_device
        cuda = self.device.type == "cuda"
        self.stream = torch.cuda.Stream(self.device) if cuda and prefetch else None
        self.blocks = {i: _Swapped(dit.blocks[i], self.offload_device, cuda)
                       for i in range(n_blocks - blocks_to_swap, n_blocks)}
        self.embeddings = []
        if offload_embeddings:
            for name in ("text_embedding", "img_emb"):
                if hasattr(dit, name):
                    self.embeddings.append(_Swapped(getattr(dit, name), self.offload_device, cuda))
        swapped = {id(_get(*s)) for w in [*self.blocks.values(), *self.embeddings] for s in w.slots}
        for slot in _tensor_slots(dit):
            t = _get(*slot)
            if id(t) not in swapped and t.device != self.device:
                _put(*slot, t.detach().to(self.device))
        for i, block in enumerate(dit.blocks):
            self._hooks.append(block.register_forward_pre_hook(self._pre_hook(i)))
            if i in self.blocks:
                self._hooks.append(block.register_forward_hook(self._post_hook(self.blocks[i])))
        for emb in self.embeddings:
            self._hooks.append(emb.module.register_forward_pre_hook(self._embedding_pre_hook(emb)))
            self._hooks.append(emb.module.register_forward_hook(self._post_hook(emb)))

    # -- moving -----------------------------------------------------------------------------------
    def _load(self, item: _Swapped, side_stream: bool) -> None:
        if item.resident:
            return
        self.loads += 1
        if self._simulate:
            copies = [h.clone() for h in item.host]
        elif side_stream and self.stream is not None:
            main = torch.cuda.current_stream(self.device)
            with torch.cuda.stream(self.stream):
                copies = [h.to(self.device, non_blocking=True) for h in item.host]
                item.event = torch.cuda.Event()
                item.event.record(self.stream)
            for c in copies:
                c.record_stream(main)  # the main stream uses these; don't recycle their memory early
        else:
            copies = [h.to(self.device, non_blocking=True) for h in item.host]
        for slot, c in zip(item.slots, copies):
            _put(*slot, c)
        item.resident = True

    def _ready(self, item: _Swapped) -> None:
        self._load(item, side_stream=False)
        if item.event is not None:
            torch.cuda.current_stream(self.device).wait_event(item.event)
            item.event = None

    def _offload(self, item: _Swapped) -> None:
        for slot, h in zip(item.slots, item.host):
            _put(*slot, h)
        item.resident = False
        item.event = None

    # -- hooks ------------------------------------------------------------------------------------
    # Never traced by dynamo: a compiled block (nn.Module.compile) runs its hooks as frames of their
    # own, and these move tensors and count loads, which would only add guards and recompiles.
    def _pre_hook(self, i: int):
        @torch.compiler.disable
        def hook(module, args):
            item = self.blocks.get(i)
            if item is not None:
                self._ready(item)
            nxt = self.blocks.get(i + 1)
            if self.prefetch and nxt is not None:
                self._load(nxt, side_stream=True)
        return hook

    def _embedding_pre_hook(self, item: _Swapped):
        @torch.compiler.disable
        def hook(module, args):
            self._ready(item)
        return hook

    def _post_hook(self, item: _Swapped):
        @torch.compiler.disable
        def hook(module, args, output):
            self._offload(item)
        return hook

    # -- public -----------------------------------------------------------------------------------
    def resident_blocks(self) -> list[int]:
        return sorted(i for i, item in self.blocks.items() if item.resident)

    def release(self) -> None:
        """Send every swapped block back to the host (e.g. after an interrupted forward)."""
        for item in [*self.blocks.values(), *getattr(self, "embeddings", [])]:
            if item.resident:
                self._offload(item)

    def remove(self) -> None:
        """Take the hooks off; swapped blocks stay on the offload device."""
        self.release()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()


def enable_block_swap(
    dit: nn.Module,
    blocks_to_swap: int,
    device,
    offload_device="cpu",
    prefetch: bool = True,
    offload_embeddings: bool = False,
    simulate: bool = False,
) -> BlockSwapper:
    """Run ``dit`` on ``device`` with its last ``blocks_to_swap`` blocks kept on ``offload_device``.

    Everything else is moved to ``device``. With ``device == offload_device`` this only moves the
    model there (nothing to gain), unless ``simulate`` (tests): then swapped blocks are cloned in
    and dropped again around their forward exactly as on a GPU. An earlier swapper on the same
    model must be ``remove()``d first.
    """
    existing = getattr(dit, "_wan_block_swapper", None)
    if existing is not None:
        existing.remove()
    swapper = BlockSwapper(dit, blocks_to_swap, device, offload_device, prefetch, offload_embeddings, simulate)
    dit._wan_block_swapper = swapper
    return swapper


def apply_block_swap(dit: nn.Module, args: BlockSwapArgs | None, device, offload_device="cpu") -> BlockSwapper | None:
    """``enable_block_swap`` from the node's options; None (and no change) when ``args`` is None.
    "auto" must be resolved to a number first (``wan.job.memory``)."""
    if args is None:
        return None
    if args.auto:
        raise WanInputError("blocks_to_swap 'auto' is chosen per job by the memory plan: resolve it first")
    return enable_block_swap(dit, args.blocks_to_swap, device, offload_device, args.prefetch, args.offload_embeddings)
