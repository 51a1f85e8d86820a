"""One real ComfyUI server per ComfyUI release (comfy_installs.VERSIONS: 0.3.75 and 0.8.0), shared by
every test under tests/server/, so each of those tests runs once on each release; and the tiny model
set (with two input images) that the workflow tests run on.

The session fixture is parametrized by release. pytest orders the tests so that all of one release's
run before the other's, and it finalizes a parametrized fixture before it sets up the next parameter,
so only one server is alive at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny_models
from comfy_installs import VERSIONS
from comfy_server import ComfyServer

REPO = Path(__file__).resolve().parents[2]
PACK = "comfyui-wan-nodes"
HELPERS = Path(__file__).with_name("wan_test_helpers.py")

_server: ComfyServer | None = None


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"comfy{v}" for v in VERSIONS])
def comfy_server(request, tmp_path_factory):
    """The running server of one release, with this pack (and the test-only helper nodes) installed."""
    global _server
    version = request.param
    server = ComfyServer(tmp_path_factory.mktemp(f"comfy{version}"), {PACK: REPO, "wan_test_helpers.py": HELPERS},
                         comfyui=version)
    try:
        # The first start of a release compiles its bytecode (0.8.0's into the venv): more than 90 s
        # on a busy 2-core machine is possible.
        server.start(timeout=180)
        reported = server.get("/system_stats")["system"]["comfyui_version"]
        if reported != version:
            pytest.fail(f"the server for ComfyUI {version} ({server.comfyui}) says it is {reported}", pytrace=False)
        failures = server.import_failures(PACK)
        if failures or server.import_failures("wan_test_helpers.py"):
            pytest.fail(
                "ComfyUI failed to import the pack:\n" + "\n".join(failures) + "\n--- server log ---\n" + server.log,
                pytrace=False,
            )
        _server = server
        yield server
    finally:
        _server = None
        server.stop()


@pytest.fixture(scope="module")
def models(comfy_server):
    """Role -> path of the tiny files under the catalogue's names (tiny_models.write_set). The input
    images the workflows load (portrait.png, bonfire.png) are the pack's own examples, which it
    placed in the server's input folder when it was imported."""
    return tiny_models.write_set(comfy_server.models_dir(""))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _server is not None and "comfy_server" in getattr(item, "fixturenames", ()):
        report.sections.append(("ComfyUI server log (last lines)", _server.log_tail(80)))
