"""The farm's queue: prompts in arrival order, each given to the next idle worker; their websocket
messages relayed to the client that queued them; their history entries kept here.

A worker lost while it runs a prompt (its ComfyUI died, its actor died, its machine went away) has
that prompt put back at the head of the queue once, and the client is told (a ``farm_requeued``
websocket message and a note in the history entry); lost a second time, the prompt fails with an
``execution_error`` naming both losses. The lost worker is restarted; if that fails it leaves the farm.
Outputs keep the worker's file names under a first subfolder ``w<index>``: the union of the
workers' output folders, which is what /view serves.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import logging
import time
import uuid

from .worker import HISTORY

log = logging.getLogger(__name__)
REQUEUED = "farm_requeued"  # websocket message type: the prompt lost its worker and waits for another


@dataclasses.dataclass
class Job:
    prompt_id: str
    number: int
    graph: dict
    extra_data: dict
    client_id: str | None
    worker: int | None = None
    losses: list = dataclasses.field(default_factory=list)  # one line per lost worker


class Dispatcher:
    """workers: index -> Ray actor handle of a started ``ComfyWorker``."""

    def __init__(self, workers: dict, ray_module):
        self.ray = ray_module
        self.workers = dict(workers)
        self.idle = collections.deque(sorted(workers))
        self.pending: collections.deque[Job] = collections.deque()
        self.running: dict[str, Job] = {}
        self.history: dict[str, dict] = {}
        self.sockets: dict[str, set] = collections.defaultdict(set)  # client id -> open websockets
        self.counter = 0
        self.used = collections.Counter()  # worker index -> prompts it finished
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # ---- queue ----------------------------------------------------------------------------------

    def submit(self, graph: dict, extra_data: dict, client_id: str | None, prompt_id: str | None = None) -> Job:
        job = Job(prompt_id or str(uuid.uuid4()), self.counter, graph, extra_data, client_id)
        self.counter += 1
        self.pending.append(job)
        self._wake.set()
        self._status_soon()
        return job

    def delete_pending(self, prompt_ids=None) -> None:
        """Drop queued prompts (all when ``prompt_ids`` is None); running ones are not touched."""
        keep = [] if prompt_ids is None else [j for j in self.pending if j.prompt_id not in set(prompt_ids)]
        self.pending = collections.deque(keep)
        self._status_soon()

    def queue_remaining(self) -> int:
        return len(self.pending) + len(self.running)

    def queue_items(self) -> dict:
        """GET /queue in ComfyUI's shape: [number, prompt_id, prompt, extra_data, outputs to execute]."""
        item = lambda j: [j.number, j.prompt_id, j.graph, j.extra_data, []]  # noqa: E731
        return {"queue_running": [item(j) for j in self.running.values()],
                "queue_pending": [item(j) for j in self.pending]}

    async def serve(self) -> None:
        """Hand queued prompts to idle workers until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending and self.idle:
                job, index = self.pending.popleft(), self.idle.popleft()
                job.worker = index
                self.running[job.prompt_id] = job
                self._spawn(self._run(index, job))

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- one prompt on one worker ---------------------------------------------------------------

    async def _run(self, index: int, job: Job) -> None:
        entry, error = None, None
        try:
            stream = self.workers[index].run.options(num_returns="streaming").remote(
                job.prompt_id, job.graph, job.extra_data)
            async for ref in stream:
                message = await ref
                if message.get("type") == HISTORY:
                    entry = message["data"]
                else:
                    await self.send(job.client_id, _in_worker_folder(message, index))
        except Exception as exc:  # noqa: BLE001 - any failure of the actor or its ComfyUI loses the worker
            error = exc
        self.running.pop(job.prompt_id, None)
        if entry is None:
            await self._lost(index, job, error or RuntimeError("the worker's stream ended without a result"))
            return
        self._finish(index, job, entry)
        self.idle.append(index)
        self._wake.set()
        self._status_soon()

    def _finish(self, index: int, job: Job, entry: dict) -> None:
        entry = _in_worker_folder({"type": "executed", "data": entry}, index)["data"]
        entry["farm"] = {"worker": index, "notes": list(job.losses)}
        self.history[job.prompt_id] = entry
        self.used[index] += 1

    async def _lost(self, index: int, job: Job, error: BaseException) -> None:
        reason = _reason(error)
        job.losses.append(f"worker {index} was lost while running this prompt: {reason}")
        log.warning("farm: worker %d lost running prompt %s: %s", index, job.prompt_id, reason)
        if len(job.losses) == 1:
            self.pending.appendleft(job)  # it was the oldest prompt of those waiting
            await self.send(job.client_id, {"type": REQUEUED, "data": {
                "prompt_id": job.prompt_id, "worker": index, "reason": reason,
                "message": f"worker {index} was lost; the prompt runs again on another worker"}})
        else:
            message = ("the prompt lost its worker twice, so it was not run again: " + "; ".join(job.losses))
            data = {"prompt_id": job.prompt_id, "node_id": None, "node_type": "farm", "exception_type": "WorkerLost",
                    "exception_message": message, "traceback": [], "timestamp": int(time.time() * 1000)}
            self.history[job.prompt_id] = {
                "prompt": [job.number, job.prompt_id, job.graph, job.extra_data, []], "outputs": {},
                "status": {"status_str": "error", "completed": False, "messages": [["execution_error", data]]},
                "farm": {"worker": index, "notes": list(job.losses)}}
            await self.send(job.client_id, {"type": "execution_error", "data": data})
        self._status_soon()
        await self._restart(index)

    async def _restart(self, index: int) -> None:
        try:
            await self.workers[index].start.remote()
        except Exception as error:  # noqa: BLE001 - the worker leaves the farm
            log.error("farm: worker %d could not be restarted and leaves the farm: %s", index, _reason(error))
            self.workers.pop(index, None)
            if not self.workers:
                await self._fail_pending("no worker is left in the farm")
            return
        self.idle.append(index)
        self._wake.set()

    async def _fail_pending(self, why: str) -> None:
        while self.pending:
            job = self.pending.popleft()
            job.losses.append(why)
            data = {"prompt_id": job.prompt_id, "node_id": None, "node_type": "farm", "exception_type": "WorkerLost",
                    "exception_message": why}
            self.history[job.prompt_id] = {
                "prompt": [job.number, job.prompt_id, job.graph, job.extra_data, []], "outputs": {},
                "status": {"status_str": "error", "completed": False, "messages": [["execution_error", data]]},
                "farm": {"worker": None, "notes": list(job.losses)}}
            await self.send(job.client_id, {"type": "execution_error", "data": data})

    # ---- websocket ------------------------------------------------------------------------------

    async def send(self, client_id: str | None, message: dict) -> None:
        for ws in list(self.sockets.get(client_id, ())) if client_id else ():
            try:
                await ws.send_json(message)
            except (ConnectionError, RuntimeError):
                self.sockets[client_id].discard(ws)

    def status_message(self) -> dict:
        return {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}}

    def _status_soon(self) -> None:
        async def broadcast():
            for client_id in list(self.sockets):
                await self.send(client_id, self.status_message())
        try:
            self._spawn(broadcast())
        except RuntimeError:
            pass  # no running loop (a unit test driving the queue by hand)


def _in_worker_folder(message: dict, index: int) -> dict:
    """``message`` with every output file's subfolder under ``w<index>`` (history entries and
    ``executed`` messages): the files' place in the farm's union of output folders."""
    if message.get("type") != "executed":
        return message
    message = copy.deepcopy(message)
    data = message["data"]
    outputs = data.get("outputs") if "outputs" in data else {"_": data.get("output") or {}}
    for node_out in (outputs or {}).values():
        for items in (node_out or {}).values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "filename" in item:
                    item["subfolder"] = "/".join(filter(None, [f"w{index}", item.get("subfolder", "")]))
    return message


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
