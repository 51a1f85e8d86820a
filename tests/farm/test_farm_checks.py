"""The farm's checks before any job, on a real local Ray cluster: a worker whose pack declares another
version than this one is refused, naming both versions, before any ComfyUI starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import wan
from comfy_installs import comfy_install
from wan.errors import WanInputError
from wan.farm.launch import FarmOptions, start_workers

pytestmark = pytest.mark.server


def test_a_worker_with_another_pack_version_is_refused(tmp_path):
    import ray
    other = tmp_path / "other_pack"
    (other / "wan").mkdir(parents=True)
    (other / "wan" / "__init__.py").write_text('__version__ = "0.0.1-other"\n')
    try:
        with pytest.raises(WanInputError) as error:
            start_workers(FarmOptions(comfyui=comfy_install("0.3.75").root, base=tmp_path / "work", workers=2,
                                      pack=other))
    finally:
        ray.shutdown()
    message = str(error.value)
    assert f"this one has {wan.__version__}" in message
    assert "worker 0 has 0.0.1-other" in message and "worker 1 has 0.0.1-other" in message
    assert not (tmp_path / "work" / "w0").exists(), "no ComfyUI was started"


def test_options_name_the_bad_input(tmp_path):
    with pytest.raises(WanInputError, match="not a ComfyUI folder"):
        FarmOptions(comfyui=tmp_path, base=tmp_path).check()
    shutil.copy(Path(comfy_install("0.3.75").root) / "main.py", tmp_path / "main.py")
    with pytest.raises(WanInputError, match="--workers 0: expected at least 1"):
        FarmOptions(comfyui=tmp_path, base=tmp_path, workers=0).check()
