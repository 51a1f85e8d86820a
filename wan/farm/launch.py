"""A farm put together: Ray joined or started, the workers' versions checked, their ComfyUIs started,
and the endpoint served until the process is stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from pathlib import Path

from aiohttp import web

from ..errors import WanInputError
from .cluster import check_versions, connect, gpu_count
from .dispatch import Dispatcher
from .http import make_app
from .worker import ComfyWorker

log = logging.getLogger(__name__)
PACK_ROOT = Path(__file__).resolve().parents[2]  # the checkout the farm runs from; installed into each worker


@dataclasses.dataclass(frozen=True)
class FarmOptions:
    comfyui: Path  # a ComfyUI folder (holding main.py), at the same path on every machine
    base: Path  # the farm's working folder: each worker's ComfyUI home, and output/w<index>
    models: Path | None = None  # the shared model folders (default: <comfyui>/models)
    input_dir: Path | None = None  # the shared input folder (default: <comfyui>/input)
    workers: int | None = None  # default: one per GPU in the cluster
    address: str | None = None  # a Ray cluster to join (default: start a local one)
    host: str = "127.0.0.1"
    port: int = 8188
    model_paths_yaml: Path | None = None
    pack: Path = PACK_ROOT
    start_timeout: float = 180.0

    def check(self) -> None:
        if not (Path(self.comfyui) / "main.py").is_file():
            raise WanInputError(f"--comfyui {self.comfyui}: not a ComfyUI folder (no main.py in it)")
        if self.workers is not None and self.workers < 1:
            raise WanInputError(f"--workers {self.workers}: expected at least 1")


def start_workers(options: FarmOptions):
    """(ray, {index: started actor}); raises WanInputError before any job if a worker cannot serve."""
    options.check()
    ray = connect(options.address, PACK_ROOT, num_cpus=None if options.address else max(2, options.workers or 0))
    gpus = gpu_count(ray)
    count = options.workers or gpus
    if count < 1:
        raise WanInputError("the cluster has no GPU: give --workers N for N CPU workers")
    if gpus and count > gpus:
        raise WanInputError(f"--workers {count}: the cluster has only {gpus} GPUs")
    device = "cuda" if gpus else "cpu"
    actor = ray.remote(ComfyWorker).options(
        num_cpus=0, num_gpus=1 if gpus else 0, max_concurrency=8, scheduling_strategy="SPREAD")
    comfyui = Path(options.comfyui).resolve()
    models = Path(options.models or comfyui / "models").resolve()
    input_dir = Path(options.input_dir or comfyui / "input").resolve()
    handles = {i: actor.remote(i, str(comfyui), str(options.pack), str(Path(options.base).resolve()), str(models),
                               str(input_dir), device, options.model_paths_yaml and str(options.model_paths_yaml))
               for i in range(count)}
    check_versions(dict(zip(handles, ray.get([h.version.remote() for h in handles.values()]))))
    urls = ray.get([h.start.remote(options.start_timeout) for h in handles.values()])
    for i, url in zip(handles, urls):
        log.info("farm: worker %d: ComfyUI at %s (%s)", i, url, device)
    return ray, handles


async def serve(options: FarmOptions, on_ready=print) -> None:
    ray, handles = start_workers(options)
    dispatcher = Dispatcher(handles, ray)
    runner = web.AppRunner(make_app(dispatcher))
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    queue_task = loop.create_task(dispatcher.serve())
    try:
        await web.TCPSite(runner, options.host, options.port).start()
        on_ready(f"farm: {len(handles)} workers; serving http://{options.host}:{options.port}")
        await stop.wait()
    finally:
        queue_task.cancel()
        await runner.cleanup()
        await asyncio.gather(*[h.stop.remote() for h in dispatcher.workers.values()], return_exceptions=True)
        ray.shutdown()
