"""The farm's one HTTP endpoint, in the shape of ComfyUI's API (aiohttp, which ComfyUI depends on):
POST/GET /prompt, /history[/{id}], /queue, /view, /interrupt, /free, the /ws websocket, and GET
/farm (the workers and what each ran). Any other GET (/object_info, /system_stats ...) is answered by
a live worker, as every worker carries the same ComfyUI and pack.

Unlike ComfyUI, POST /prompt does not validate the graph: a worker does when it takes the prompt,
and a refused graph is recorded as a failed prompt in the history.
"""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from .dispatch import Dispatcher


def make_app(dispatcher: Dispatcher) -> web.Application:
    d = dispatcher
    routes = web.RouteTableDef()

    async def on_workers(call, *args):
        """``call(handle, *args).remote`` on each live worker; their answers (failures skipped)."""
        refs = [getattr(handle, call).remote(*args) for handle in d.workers.values()]
        answers = await asyncio.gather(*refs, return_exceptions=True)
        return [a for a in answers if not isinstance(a, BaseException)]

    @routes.post("/prompt")
    async def post_prompt(request):
        try:
            body = await request.json()
        except ValueError:
            body = None
        graph = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(graph, dict) or not graph:
            return web.json_response({"error": {"type": "no_prompt", "message": "No prompt provided",
                                                "details": "POST a JSON object whose 'prompt' is the API graph",
                                                "extra_info": {}}, "node_errors": {}}, status=400)
        extra = dict(body.get("extra_data") or {})
        client_id = body.get("client_id")
        if client_id:
            extra["client_id"] = client_id
        job = d.submit(graph, extra, client_id, body.get("prompt_id"))
        return web.json_response({"prompt_id": job.prompt_id, "number": job.number, "node_errors": {}})

    @routes.get("/prompt")
    async def get_prompt(request):
        return web.json_response({"exec_info": {"queue_remaining": d.queue_remaining()}})

    @routes.get("/history")
    async def history_all(request):
        items = list(d.history.items())
        limit = request.query.get("max_items")
        if limit and limit.isdigit():
            items = items[-int(limit):]
        return web.json_response(dict(items))

    @routes.get("/history/{prompt_id}")
    async def history_one(request):
        prompt_id = request.match_info["prompt_id"]
        entry = d.history.get(prompt_id)
        return web.json_response({} if entry is None else {prompt_id: entry})

    @routes.post("/history")
    async def history_edit(request):
        body = await _json(request)
        if body.get("clear"):
            d.history.clear()
        for prompt_id in body.get("delete", []):
            d.history.pop(prompt_id, None)
        return web.Response(status=200)

    @routes.get("/queue")
    async def queue(request):
        return web.json_response(d.queue_items())

    @routes.post("/queue")
    async def queue_edit(request):
        body = await _json(request)
        if body.get("clear"):
            d.delete_pending()
        if body.get("delete"):
            d.delete_pending(body["delete"])
        return web.Response(status=200)

    @routes.get("/view")
    async def view(request):
        query = dict(request.query)
        head, _, rest = query.get("subfolder", "").replace("\\", "/").partition("/")
        index = int(head[1:]) if head[:1] == "w" and head[1:].isdigit() else None
        if index not in d.workers:
            return web.Response(status=404, text="no such file in the farm (outputs are under w<worker>/)")
        query["subfolder"] = rest
        status, data, content_type = await d.workers[index].view.remote(query)
        return web.Response(status=status, body=data, content_type=content_type)

    @routes.post("/interrupt")
    async def interrupt(request):
        body = await _json(request)
        prompt_id = body.get("prompt_id")
        jobs = [d.running[prompt_id]] if prompt_id in d.running else [] if prompt_id else list(d.running.values())
        refs = [d.workers[j.worker].call.remote("POST", "/interrupt", {"prompt_id": j.prompt_id})
                for j in jobs if j.worker in d.workers]
        await asyncio.gather(*refs, return_exceptions=True)
        return web.Response(status=200)

    @routes.post("/free")
    async def free(request):
        await on_workers("call", "POST", "/free", await _json(request))
        return web.Response(status=200)

    @routes.get("/farm")
    async def farm(request):
        pids = dict(zip(list(d.workers), await asyncio.gather(
            *[h.comfy_pid.remote() for h in d.workers.values()], return_exceptions=True)))
        return web.json_response({"workers": {
            str(i): {"comfy_pid": None if isinstance(pid, BaseException) else pid, "finished": d.used[i],
                     "running": [j.prompt_id for j in d.running.values() if j.worker == i]}
            for i, pid in pids.items()}, "pending": [j.prompt_id for j in d.pending]})

    @routes.get("/ws")
    async def websocket(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client_id = request.query.get("clientId") or uuid.uuid4().hex
        d.sockets[client_id].add(ws)
        try:
            status = d.status_message()
            status["data"]["sid"] = client_id
            await ws.send_json(status)
            async for _ in ws:  # the frontend's feature flags and keep-alives: nothing to do
                pass
        finally:
            d.sockets[client_id].discard(ws)
            if not d.sockets[client_id]:
                d.sockets.pop(client_id, None)
        return ws

    @routes.get("/{tail:.*}")
    async def any_get(request):
        path = request.rel_url.path_qs
        for handle in list(d.workers.values()):
            try:
                status, body = await handle.call.remote("GET", path)
            except Exception:  # noqa: BLE001 - try the next worker
                continue
            if isinstance(body, (dict, list)):
                return web.json_response(body, status=status)
            return web.Response(status=status, text=str(body or ""))
        return web.Response(status=503, text="no worker is running")

    app = web.Application(client_max_size=1024 ** 3)
    app.add_routes(routes)
    return app


async def _json(request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
