"""The bundled workflows in ComfyUI's own frontend, as a user meets them: headless Chromium (Debian's
package, driven by Playwright) opens the session server's page, loads each UI-format workflow of
workflows/ through the app, and must see no missing-node dialog, our nodes with the widgets their
INPUT_TYPES declare, widget values the server accepts, and the same graph the .api.json file holds
once the frontend converts it. One workflow is queued with the page's Run button and must finish.

Screenshots of each loaded graph go to the test's tmp_path and to out/screenshots/comfy<version>/ (git-ignored).
Without Chromium or Playwright the tests skip, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from comfy_client import execution_error

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted(p for p in (REPO / "workflows").glob("*.json") if not p.name.endswith(".api.json"))
SCREENSHOTS = REPO / "out" / "screenshots"
CHROMIUM = os.environ.get("WAN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
USER_FILE_SUFFIXES = (".safetensors", ".gguf", ".pt", ".ckpt", ".png", ".jpg", ".jpeg", ".webp")
# Added by the frontend after a seed input; not an input of the node.
FRONTEND_ONLY_WIDGETS = {"control_after_generate"}


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    """Chromium's path; decided before the server starts, so a skip costs nothing."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def page(chromium, comfy_server):
    from playwright.sync_api import sync_playwright

    # A first visit opens the template browser over the canvas; a returning user's setting skips it.
    status, body = comfy_server.request("POST", "/settings/Comfy.TutorialCompleted", True)
    assert status == 200, body
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1600, "height": 1000})
            pg.page_errors = []
            pg.comfy_version = comfy_server.version  # each release's screenshots in a folder of its own
            pg.on("pageerror", lambda error: pg.page_errors.append(str(error)))
            pg.goto(comfy_server.url)
            pg.wait_for_function(
                "() => window.app && app.graph && window.LiteGraph"
                " && Object.keys(LiteGraph.registered_node_types).includes('WanVideoCombine')",
                timeout=120_000,
            )
            yield pg
        finally:
            browser.close()


def _dialogs(pg) -> list[str]:
    return pg.evaluate(
        "() => Array.from(document.querySelectorAll('.p-dialog, [role=dialog]')).map(d => d.innerText)"
    )


def _load(pg, workflow: dict) -> list[dict]:
    """Load a UI workflow as the app does with a dropped file; describe the nodes it made."""
    pg.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    pg.wait_for_timeout(300)  # dialogs open on the next ticks
    return pg.evaluate("""() => app.graph.nodes.map(n => ({
        id: String(n.id), type: n.type, has_errors: !!n.has_errors,
        registered: !!LiteGraph.registered_node_types[n.type],
        widgets: (n.widgets || []).map(w => ({name: w.name, type: w.type, value: w.value})),
    }))""")


def _close_dialogs(pg) -> None:
    for _ in range(3):
        if not _dialogs(pg):
            return
        pg.keyboard.press("Escape")
        pg.wait_for_timeout(200)


def _widget_inputs(info: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of the inputs the frontend shows as widgets, in declaration order."""
    out = []
    for section in ("required", "optional"):
        for name, spec in (info["input"].get(section) or {}).items():
            kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            if (isinstance(kind, list) or kind in WIDGET_TYPES) and not opts.get("forceInput"):
                out.append((name, kind, opts))
    return out


def _value_problem(name, kind, opts, value) -> str | None:
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else opts.get("options", [])
        if isinstance(value, str) and value.lower().endswith(USER_FILE_SUFFIXES):
            return None  # a model or image the user supplies: the list is the server's folder, empty here
        return None if value in choices else f"{name}={value!r} is not one of {choices}"
    if kind in ("INT", "FLOAT"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"{name}={value!r} is not a number"
        lo, hi = opts.get("min", float("-inf")), opts.get("max", float("inf"))
        return None if lo <= value <= hi else f"{name}={value!r} outside [{lo}, {hi}]"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{name}={value!r} is not a boolean"
    if kind == "STRING" and not isinstance(value, str):
        return f"{name}={value!r} is not a string"
    return None


def _screenshot(pg, tmp_path: Path, name: str) -> Path:
    pg.evaluate("async () => { await app.extensionManager.command.execute('Comfy.Canvas.FitView'); }")
    pg.wait_for_timeout(300)
    path = tmp_path / f"{name}.png"
    pg.screenshot(path=str(path))
    folder = SCREENSHOTS / f"comfy{pg.comfy_version}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, folder / path.name)
    return path


def test_serves_the_pinned_frontend(page, comfy_server):
    """Each release with the frontend its own requirements pin (0.8.0's from its own site folder)."""
    pin = re.search(r"comfyui-frontend-package==([\w.]+)", (comfy_server.comfyui / "requirements.txt").read_text())
    assert pin, "ComfyUI's requirements.txt pins no frontend"
    assert page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__") == pin.group(1)
    assert "ComfyUI" in page.title()


def test_missing_nodes_are_detected(page):
    """The checks below can fail: a workflow naming an unknown node shows the dialog and an error node."""
    workflow = json.loads((REPO / "workflows" / "video_combine_demo.json").read_text())
    broken = copy.deepcopy(workflow)
    broken["nodes"][0]["type"] = "WanNoSuchNode"
    nodes = _load(page, broken)
    bad = [n for n in nodes if n["type"] == "WanNoSuchNode"]
    assert bad and bad[0]["has_errors"] and not bad[0]["registered"]
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.p-dialog, [role=dialog]'))"
        ".some(d => d.innerText.includes('WanNoSuchNode'))", timeout=30_000)
    _close_dialogs(page)
    assert not _dialogs(page)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_loads_in_the_frontend(comfy_server, page, path, tmp_path):
    workflow = json.loads(path.read_text())
    errors_before = len(page.page_errors)
    nodes = _load(page, workflow)
    dialogs = _dialogs(page)
    shot = _screenshot(page, tmp_path, path.stem)
    assert not dialogs, f"{path.name}: dialog on load: {dialogs}"
    assert page.page_errors[errors_before:] == []
    assert len(nodes) == len(workflow["nodes"])
    info = comfy_server.object_info()
    ours = {name for name, i in info.items() if "comfyui-wan-nodes" in i.get("python_module", "")}
    problems = []
    for node in nodes:
        if not node["registered"] or node["has_errors"]:
            problems.append(f"node {node['id']} {node['type']}: not a known node type")
            continue
        if node["type"] not in info:
            continue  # frontend-only nodes (notes, reroutes) have no server side
        declared = _widget_inputs(info[node["type"]])
        shown = [w for w in node["widgets"] if w["name"] not in FRONTEND_ONLY_WIDGETS]
        if node["type"] in ours and [w["name"] for w in shown] != [d[0] for d in declared]:
            problems.append(f"node {node['id']} {node['type']}: widgets {[w['name'] for w in shown]} "
                            f"!= INPUT_TYPES {[d[0] for d in declared]}")
        values = {w["name"]: w["value"] for w in shown}
        for name, kind, opts in declared:
            if name in values:
                problem = _value_problem(name, kind, opts, values[name])
                if problem:
                    problems.append(f"node {node['id']} {node['type']}: {problem}")
    assert not problems, f"{path.name} (screenshot {shot}):\n" + "\n".join(problems)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_frontend_graph_equals_api_file(page, path):
    """What the page would queue for the UI file is what the bundled .api.json file holds."""
    api_path = path.with_name(path.stem + ".api.json")
    if not api_path.is_file():
        pytest.skip(f"{path.name} has no .api.json beside it")
    _load(page, json.loads(path.read_text()))
    _close_dialogs(page)
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    api = json.loads(api_path.read_text())
    assert {k: v["class_type"] for k, v in prompt.items()} == {k: v["class_type"] for k, v in api.items()}
    for node_id, node in api.items():
        assert prompt[node_id]["inputs"] == node["inputs"], f"{path.name} node {node_id} ({node['class_type']})"


def test_run_button_queues_and_finishes(comfy_server, page, tmp_path):
    workflow = json.loads((REPO / "workflows" / "video_combine_demo.json").read_text())
    _load(page, workflow)
    _close_dialogs(page)
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/prompt"), timeout=60_000
    ) as answer:
        page.get_by_role("button", name="Run", exact=True).click()
    body = answer.value.json()
    assert answer.value.status == 200 and not body.get("node_errors"), body
    entry = comfy_server.wait(body["prompt_id"], timeout=120)
    assert execution_error(entry) is None, execution_error(entry)
    files = [item for out in entry["outputs"].values() for item in out.get("images", [])]
    assert files
    for item in files:
        video = comfy_server.output_dir / item["subfolder"] / item["filename"]
        assert video.is_file() and video.stat().st_size > 0
    _screenshot(page, tmp_path, "video_combine_demo_after_run")
