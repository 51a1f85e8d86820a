"""The farm's queue (wan/farm/dispatch.py) with stand-in workers shaped like Ray actor handles: arrival
order, re-queue after one lost worker, a clear failure after a second, outputs under w<index>.
The real thing (Ray actors, ComfyUI processes) is test_farm_server.py."""

from __future__ import annotations

import asyncio

from wan.farm.dispatch import REQUEUED, Dispatcher
from wan.farm.worker import HISTORY


class _Remote:
    def __init__(self, fn):
        self.fn = fn

    def options(self, **_):
        return self

    def remote(self, *args):
        return self.fn(*args)


class _Worker:
    """run(prompt_id, ...) yields awaitables as a streaming Ray generator does; ``dies`` prompt ids raise."""

    def __init__(self, index, ran, dies=()):
        self.index, self.ran, self.dies, self.restarts = index, ran, set(dies), 0
        self.run = _Remote(self._run)
        self.start = _Remote(self._start)

    def _run(self, prompt_id, graph, extra):
        async def value(v):
            return v

        async def stream():
            self.ran.append((self.index, prompt_id))
            await asyncio.sleep(0.01)
            yield value({"type": "progress", "data": {"prompt_id": prompt_id, "value": 1, "max": 1}})
            if prompt_id in self.dies:
                raise RuntimeError("ComfyUI exited while running the prompt")
            outputs = {"8": {"gifs": [{"filename": f"{prompt_id}.mp4", "subfolder": "test", "type": "output"}]}}
            yield value({"type": HISTORY, "data": {"outputs": outputs, "status": {"status_str": "success"}}})
        return stream()

    async def _start(self):
        self.restarts += 1


class _Socket:
    def __init__(self):
        self.messages = []

    async def send_json(self, message):
        self.messages.append(message)


async def _drain(dispatcher, ids):
    server = asyncio.get_running_loop().create_task(dispatcher.serve())
    for _ in range(500):
        if all(i in dispatcher.history for i in ids):
            break
        await asyncio.sleep(0.01)
    server.cancel()


def test_order_requeue_once_then_fail():
    ran = []

    async def main():
        # worker 0 loses "twice" (then, restarted, "twice" again on its second try); worker 1 loses "once"
        workers = {0: _Worker(0, ran, dies={"twice"}), 1: _Worker(1, ran, dies={"once", "twice"})}
        d = Dispatcher(workers, ray_module=None)
        ws = _Socket()
        d.sockets["me"].add(ws)
        ids = [d.submit({"1": {}}, {}, "me", pid).prompt_id for pid in ("a", "once", "twice", "b")]
        await _drain(d, ids)
        return d, ws, workers, ids

    d, ws, workers, ids = asyncio.run(main())
    assert [pid for _, pid in ran][:2] == ["a", "once"], "prompts start in arrival order"
    assert d.history["a"]["outputs"]["8"]["gifs"][0]["subfolder"] == f"w{d.history['a']['farm']['worker']}/test"
    once = d.history["once"]
    assert once["status"]["status_str"] == "success" and once["farm"]["worker"] == 0
    assert once["farm"]["notes"] == ["worker 1 was lost while running this prompt: ComfyUI exited while running "
                                     "the prompt"]
    twice = d.history["twice"]
    (kind, error), = twice["status"]["messages"]
    assert kind == "execution_error" and error["exception_type"] == "WorkerLost"
    assert error["exception_message"].count("was lost") == 2
    told = [m["data"]["prompt_id"] for m in ws.messages if m["type"] == REQUEUED]
    assert told == ["once", "twice"]
    assert [m["data"]["prompt_id"] for m in ws.messages if m["type"] == "execution_error"] == ["twice"]
    assert d.history["b"]["status"]["status_str"] == "success"
    assert workers[0].restarts + workers[1].restarts == 3, "each lost worker is restarted"
