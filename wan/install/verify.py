"""Check a ComfyUI install against the catalogue: which files each bundled workflow needs are present,
missing or wrong, without loading any weights.

A present file is opened only for its header (safetensors JSON header, GGUF key/value and tensor
tables): the header must be whole and fit the file (a truncated download is caught here), and the
tensor names and shapes must say the file is what its catalogue entry claims, e.g. a VAE saved
under a DiT's name is reported as "wrong: a Wan 2.1 VAE". The sha256 is compared only on request
(``checksum=True``), since hashing reads every byte of files up to 30 GB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .catalog import Catalog, ModelFile
from .download import sha256_of
from ..errors import WanFileError
from ..models.dit.config import DIT_PRESETS, same_network
from ..models.identify import DIT_SIZES, identify_file


@dataclass(frozen=True)
class FileCheck:
    file: ModelFile
    status: str  # "ok", "missing" or "wrong"
    path: str | None
    message: str


@dataclass(frozen=True)
class WorkflowReport:
    workflow: str
    ok: bool
    slots: dict[str, list[FileCheck]]  # slot -> checks of its alternatives, the default first


# -- reading headers -------------------------------------------------------------------------------
def expected_identity(f: ModelFile) -> str | None:
    """The variant ``identify`` reports for a correct copy of ``f``."""
    if f.role == "lora":  # a LoRA is known by the width of the DiT it patches: causvid_t2v_14b -> 14b
        return next((size for size in DIT_SIZES.values() if f.variant.endswith("_" + size)), None)
    if f.role != "dit":
        return f.variant
    preset = DIT_PRESETS.get(f.variant.removesuffix("_high").removesuffix("_low"))  # A14B experts: one network each
    if preset is None:
        return f.variant
    # identify names a network by the first preset with its tensors (Wan2.2 T2V A14B is t2v_14b's)
    return next(p.variant for p in DIT_PRESETS.values() if same_network(p, preset))


# -- checking an install ---------------------------------------------------------------------------
def check_file(f: ModelFile, comfyui: str | os.PathLike, *, checksum: bool = False) -> FileCheck:
    """Whether ``f`` is present in the install and is what its name says."""
    path = next((p for p in f.candidate_paths(comfyui) if os.path.isfile(p)), None)
    if path is None:
        return FileCheck(f, "missing", None, f"missing: expected at {f.local_path(comfyui)}")
    size = os.path.getsize(path)
    if f.size is not None and size != f.size:
        what = "truncated" if size < f.size else "larger than published"
        return FileCheck(f, "wrong", path, f"wrong: {size} bytes, published size is {f.size} ({what})")
    try:
        who = identify_file(path)
    except WanFileError as exc:
        return FileCheck(f, "wrong", path, f"wrong: {exc.problem}")
    except OSError as exc:
        return FileCheck(f, "wrong", path, f"wrong: cannot read it ({exc.strerror or exc})")
    want = expected_identity(f)
    if who.role != f.role:
        return FileCheck(f, "wrong", path, f"wrong: this is {who.detail}, not a {f.role} ({f.variant})")
    if who.variant != want:
        return FileCheck(f, "wrong", path, f"wrong: this is {who.detail}, not {f.variant}")
    if checksum and f.sha256:
        actual = sha256_of(path)
        if actual != f.sha256:
            return FileCheck(f, "wrong", path, f"wrong: sha256 {actual} differs from the published {f.sha256}")
    return FileCheck(f, "ok", path, f"ok: {who.detail}")


def verify(catalog: Catalog, comfyui: str | os.PathLike, *, workflows: list[str] | None = None,
           checksum: bool = False) -> list[WorkflowReport]:
    """Per workflow, per slot, the check of each alternative file; a slot is filled by any ok one."""
    cache: dict[str, FileCheck] = {}
    reports = []
    for name in workflows or list(catalog.workflows):
        slots: dict[str, list[FileCheck]] = {}
        for slot in catalog.workflows[name].slots:
            checks = []
            for f in catalog.alternatives(name, slot):
                if f.name not in cache:
                    cache[f.name] = check_file(f, comfyui, checksum=checksum)
                checks.append(cache[f.name])
            slots[slot] = checks
        ok = all(any(c.status == "ok" for c in checks) for checks in slots.values())
        reports.append(WorkflowReport(name, ok, slots))
    return reports
