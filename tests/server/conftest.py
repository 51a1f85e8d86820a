"""One real ComfyUI server per test session, shared by every test under tests/server/, and the
tiny model set (with two input images) that the workflow tests run on."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny_models
from comfy_server import ComfyServer

REPO = Path(__file__).resolve().parents[2]
PACK = "comfyui-wan-nodes"
HELPERS = Path(__file__).with_name("wan_test_helpers.py")

_server: ComfyServer | None = None


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """The running server, with this pack (and the test-only helper nodes) installed."""
    global _server
    server = ComfyServer(tmp_path_factory.mktemp("comfy"), {PACK: REPO, "wan_test_helpers.py": HELPERS})
    try:
        server.start(timeout=90)
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
