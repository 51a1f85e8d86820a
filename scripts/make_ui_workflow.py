"""Make the UI-format workflow (what ComfyUI's frontend saves and loads by drag and drop) from an
API-format one (what POST /prompt takes), and read a UI workflow back into API format.

The node definitions come from a server's /object_info (a saved JSON file or a live URL), which
gives each node's inputs in order: widget inputs become ``widgets_values`` (with the extra values
the frontend stores after seed widgets and image-upload combos), socket inputs become links.

    python scripts/make_ui_workflow.py --url http://127.0.0.1:8188 workflows/t2v.api.json ...
    python scripts/make_ui_workflow.py --object-info info.json workflows/*.api.json

writes ``workflows/<name>.json`` beside each ``<name>.api.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

from comfy_client import ComfyClient

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
SEED_NAMES = ("seed", "noise_seed")
COLUMN_WIDTH, NODE_WIDTH, ROW_HEIGHT = 400, 340, 26


def _inputs(info: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, optional) of a node's inputs in the order the frontend creates them."""
    out = []
    for group, optional in (("required", False), ("optional", True)):
        specs = info.get("input", {}).get(group, {})
        order = info.get("input_order", {}).get(group, list(specs))
        out += [(name, specs[name], optional) for name in order if name in specs]
    return out


def is_widget(spec) -> bool:
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _extra_values(name: str, spec) -> list:
    """Values the frontend saves after a widget's own: seed control and image upload."""
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if spec[0] == "INT" and (name in SEED_NAMES or opts.get("control_after_generate")):
        return ["fixed"]
    if opts.get("image_upload"):
        return ["image"]
    return []


def _default(spec):
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if "default" in opts:
        return opts["default"]
    if isinstance(spec[0], list):
        return spec[0][0] if spec[0] else None
    if spec[0] == "COMBO" and opts.get("options"):  # the newer node schema's combo
        return opts["options"][0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(spec[0])


def _depths(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(nid: str, seen=()) -> int:
        if nid in depth:
            return depth[nid]
        parents = [v[0] for v in api[nid]["inputs"].values() if isinstance(v, list) and v[0] not in seen]
        depth[nid] = 1 + max((visit(p, seen + (nid,)) for p in parents), default=-1)
        return depth[nid]

    for nid in api:
        visit(nid)
    return depth


def api_to_ui(api: dict, object_info: dict) -> dict:
    """The UI workflow of an API graph: ids kept, nodes laid out in columns by depth."""
    depth = _depths(api)
    order = sorted(api, key=lambda n: (depth[n], int(n)))
    links, nodes = [], []
    out_links: dict[tuple[str, int], list[int]] = {}
    column_y: dict[int, int] = {}
    for rank, nid in enumerate(order):
        node = api[nid]
        info = object_info[node["class_type"]]
        sockets, values = [], []
        for name, spec, optional in _inputs(info):
            given = node["inputs"].get(name)
            if is_widget(spec) and not isinstance(given, list):
                values.append(_default(spec) if given is None else given)
                values += _extra_values(name, spec)
                continue
            link_id = None
            if isinstance(given, list):
                link_id = len(links) + 1
                src, slot = str(given[0]), int(given[1])
                src_type = object_info[api[src]["class_type"]]["output"][slot]
                links.append([link_id, int(src), slot, int(nid), len(sockets), src_type])
                out_links.setdefault((src, slot), []).append(link_id)
            entry = {"name": name, "type": spec[0] if isinstance(spec[0], str) else "COMBO", "link": link_id}
            if optional:
                entry["shape"] = 7  # the frontend's hollow dot for optional inputs
            sockets.append(entry)
        x = 40 + depth[nid] * COLUMN_WIDTH
        height = 46 + ROW_HEIGHT * (len(sockets) + max(len(values), 1))
        for name in ("positive_prompt", "negative_prompt", "text"):
            if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                height += 90  # multiline text boxes
        y = column_y.get(depth[nid], 60)
        column_y[depth[nid]] = y + height + 40
        nodes.append({
            "id": int(nid), "type": node["class_type"], "pos": [x, y], "size": [NODE_WIDTH, height],
            "flags": {}, "order": rank, "mode": 0, "inputs": sockets, "outputs": [],
            "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": values,
            **({"title": node["_meta"]["title"]} if node.get("_meta", {}).get("title") not in (None, info.get("display_name")) else {}),
        })
    for entry in nodes:
        info = object_info[entry["type"]]
        names = info.get("output_name") or info["output"]
        entry["outputs"] = [
            {"name": name, "type": kind, "links": out_links.get((str(entry["id"]), i)) or None, "slot_index": i}
            for i, (name, kind) in enumerate(zip(names, info["output"]))
        ]
    nodes.sort(key=lambda n: n["id"])
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(api, sort_keys=True))),
        "revision": 0,
        "last_node_id": max(n["id"] for n in nodes),
        "last_link_id": len(links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
        "version": 0.4,
    }


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """The API graph a UI workflow describes (what the frontend would POST), without _meta."""
    link_src = {l[0]: (str(l[1]), int(l[2])) for l in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0:
            continue
        if node["type"] not in object_info and not any(o.get("links") for o in node.get("outputs", [])):
            continue  # frontend-only nodes (Note, MarkdownNote) are not part of the prompt
        info = object_info[node["type"]]
        values = list(node.get("widgets_values") or [])
        sockets = {s["name"]: s.get("link") for s in node.get("inputs", [])}
        inputs = {}
        for name, spec, _ in _inputs(info):
            if name in sockets and sockets[name] is not None:
                inputs[name] = list(link_src[sockets[name]])
                if is_widget(spec):  # a widget converted to an input keeps its slot in widgets_values
                    del values[: 1 + len(_extra_values(name, spec))]
                continue
            if is_widget(spec):
                if not values:
                    # Saved before ComfyUI gave the node this widget (0.8.0's ImageScaleToTotalPixels
                    # resolution_steps in older templates): the frontend keeps the widget's default.
                    if _default(spec) is None:
                        raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {name}")
                    inputs[name] = _default(spec)
                    continue
                inputs[name] = values.pop(0)
                del values[: len(_extra_values(name, spec))]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def strip_meta(api: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="a running ComfyUI server with this pack installed")
    src.add_argument("--object-info", type=Path, help="a saved /object_info JSON")
    parser.add_argument("api_files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.url:
        object_info = ComfyClient(args.url).object_info()
    else:
        object_info = json.loads(args.object_info.read_text())
    for path in args.api_files:
        api = json.loads(path.read_text())
        ui = api_to_ui(api, object_info)
        if ui_to_api(ui, object_info) != strip_meta(api):
            print(f"{path}: the UI graph does not read back to the API graph", file=sys.stderr)
            return 1
        target = path.with_name(path.name.replace(".api.json", ".json"))
        target.write_text(json.dumps(ui, indent=1, ensure_ascii=False) + "\n")
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
