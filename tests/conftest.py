import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The pack's root (``import wan``), the shared test helpers (``from refs import comfy``) and the
# standard-library scripts they share with scripts/main_job.py (``from comfy_client import ...``).
for _path in (REPO / "scripts", REPO / "tests" / "support", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seeded():
    import torch

    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    """Markers by where a test lives, so ``-m "not server"`` and friends select without per-file
    decorations: tests/server/ is ``server`` (test_browser.py also ``browser``), test_fuzz_* and
    *_fuzz.py are ``fuzz``, *_gpu.py is ``gpu``, *_slow.py is ``slow``."""
    for item in items:
        path = Path(str(item.fspath))
        if "server" in path.parent.parts[-1:]:
            item.add_marker(pytest.mark.server)
        if path.name == "test_browser.py":
            item.add_marker(pytest.mark.browser)
        if path.stem.startswith("test_fuzz") or path.stem.endswith("_fuzz"):
            item.add_marker(pytest.mark.fuzz)
        if path.stem.endswith("_gpu"):
            item.add_marker(pytest.mark.gpu)
        if path.stem.endswith("_slow"):
            item.add_marker(pytest.mark.slow)
