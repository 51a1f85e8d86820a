"""The model-file catalogue: which files the bundled workflows need and where they are published.

The data lives in ``catalog.json`` next to this module (data, not code, so a new quantization or a
moved file is a one-line edit). Each file names its role and variant, the hub repository, path and
revision it is published at, the ComfyUI model folder it goes in, its size and sha256 where
published (``null`` otherwise) and, per bundled workflow, the slot it fills. Files that fill the
same slot of a workflow are alternatives (fp16 or GGUF of the same model); the workflow's
``slots`` table names the one ``download`` picks.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from ..errors import WanFileError, WanInputError

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalog.json")

ROLES = ("dit", "text_encoder", "clip_vision", "vae", "lora", "audio_encoder")
FORMATS = ("safetensors", "gguf")
# ComfyUI reads each of these kinds from two folders (folder_paths: "unet" and "clip" are the
# older names), so a file found under the sibling folder counts as present.
FOLDER_ALIASES: dict[str, tuple[str, ...]] = {
    "diffusion_models": ("diffusion_models", "unet"),
    "unet": ("unet", "diffusion_models"),
    "text_encoders": ("text_encoders", "clip"),
    "clip": ("clip", "text_encoders"),
    "clip_vision": ("clip_vision",),
    "vae": ("vae",),
    "loras": ("loras",),
    "audio_encoders": ("audio_encoders",),
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelFile:
    """One published model file and where it belongs in a ComfyUI install."""

    name: str
    role: str  # one of ROLES
    variant: str  # e.g. t2v_1_3b, vace_14b, wan22_t2v_a14b_high, wan21 (VAE), umt5_xxl
    format: str  # one of FORMATS
    repo: str  # hub repository id, "owner/name"
    path: str  # path inside the repository
    revision: str  # branch, tag or commit the size/sha256 belong to
    folder: str  # ComfyUI model folder, a key of FOLDER_ALIASES
    filename: str  # name under <comfyui>/models/<folder>/
    size: int | None
    sha256: str | None
    workflows: dict[str, str] = field(default_factory=dict)  # workflow -> slot it fills
    description: str = ""
    checksum_source: str | None = None

    def local_path(self, comfyui: str | os.PathLike) -> str:
        """Where ``download`` puts the file: ``<comfyui>/models/<folder>/<filename>``."""
        return os.path.join(os.fspath(comfyui), "models", self.folder, self.filename)

    def candidate_paths(self, comfyui: str | os.PathLike) -> list[str]:
        """Every place ComfyUI would find this file, the download location first."""
        root = os.path.join(os.fspath(comfyui), "models")
        return [os.path.join(root, f, self.filename) for f in FOLDER_ALIASES.get(self.folder, (self.folder,))]


@dataclass(frozen=True)
class Workflow:
    name: str
    description: str
    slots: dict[str, str]  # slot -> default file name


@dataclass(frozen=True)
class Catalog:
    files: tuple[ModelFile, ...]
    workflows: dict[str, Workflow]
    default: str  # the workflow whose files `download default` fetches
    path: str

    def file(self, name: str) -> ModelFile:
        """A file by catalogue name or by file name, case-insensitively."""
        key = name.lower()
        for f in self.files:
            if key in (f.name.lower(), f.filename.lower()):
                return f
        raise WanInputError(f"no model file named {name!r} in the catalogue {self.path} "
                            "(`python -m wan models list` shows the names)")

    def alternatives(self, workflow: str, slot: str) -> list[ModelFile]:
        """The files that can fill ``slot`` of ``workflow``, the default first."""
        wf = self.workflows[workflow]
        default = self.file(wf.slots[slot])
        rest = [f for f in self.files if f.workflows.get(workflow) == slot and f is not default]
        return [default, *rest]

    def resolve(self, names: list[str]) -> list[ModelFile]:
        """Expand names into files: a file name, a workflow (its default files) or ``default``."""
        out: list[ModelFile] = []
        for name in names:
            if name == "default":
                name = self.default
            if name in self.workflows:
                picked = [self.file(n) for n in self.workflows[name].slots.values()]
            else:
                picked = [self.file(name)]
            out.extend(f for f in picked if f not in out)
        return out


def validate(data: object) -> list[str]:
    """Every way ``data`` (parsed catalog.json) breaks the schema; empty when it is sound."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return ["the catalogue must be a JSON object"]
    if data.get("schema") != 1:
        problems.append(f"schema must be 1, not {data.get('schema')!r}")
    files = data.get("files")
    workflows = data.get("workflows")
    if not isinstance(files, list) or not files:
        return problems + ["'files' must be a non-empty list"]
    if not isinstance(workflows, dict):
        return problems + ["'workflows' must be an object"]
    names: dict[str, dict] = {}
    targets: set[tuple[str, str]] = set()
    types = {"name": str, "role": str, "variant": str, "format": str, "repo": str, "path": str,
             "revision": str, "folder": str, "filename": str, "workflows": dict, "description": str}
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            problems.append(f"files[{i}] is not an object")
            continue
        where = f"files[{i}] ({f.get('name')!r})"
        for key, typ in types.items():
            if not isinstance(f.get(key), typ):
                problems.append(f"{where}: {key!r} must be a {typ.__name__}")
        unknown = set(f) - set(types) - {"size", "sha256", "checksum_source"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        if not all(isinstance(f.get(k), typ) for k, typ in types.items()):
            continue
        if not _NAME.match(f["name"]):
            problems.append(f"{where}: name has characters outside [A-Za-z0-9._-]")
        if f["name"].lower() in names:
            problems.append(f"{where}: name used twice")
        names[f["name"].lower()] = f
        if f["role"] not in ROLES:
            problems.append(f"{where}: role {f['role']!r} not one of {ROLES}")
        if f["format"] not in FORMATS:
            problems.append(f"{where}: format {f['format']!r} not one of {FORMATS}")
        if not f["filename"].endswith("." + f["format"]):
            problems.append(f"{where}: filename {f['filename']!r} does not end in .{f['format']}")
        if f["folder"] not in FOLDER_ALIASES:
            problems.append(f"{where}: folder {f['folder']!r} not one of {sorted(FOLDER_ALIASES)}")
        if f["repo"].count("/") != 1:
            problems.append(f"{where}: repo {f['repo']!r} is not 'owner/name'")
        if f["path"].rsplit("/", 1)[-1] != f["filename"] or "\\" in f["path"] or ".." in f["path"].split("/"):
            problems.append(f"{where}: path {f['path']!r} must end in the filename and stay inside the repo")
        if "/" in f["filename"] or f["filename"] != os.path.basename(f["filename"]):
            problems.append(f"{where}: filename must be a bare file name")
        if (f["folder"], f["filename"].lower()) in targets:
            problems.append(f"{where}: another file already goes to {f['folder']}/{f['filename']}")
        targets.add((f["folder"], f["filename"].lower()))
        size = f.get("size")
        if size is not None and (type(size) is not int or size <= 0):
            problems.append(f"{where}: size must be a positive integer or null")
        sha = f.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
            problems.append(f"{where}: sha256 must be 64 lowercase hex digits or null")
        if sha is not None and not f.get("checksum_source"):
            problems.append(f"{where}: a sha256 needs a checksum_source saying where it was published")
        for wf, slot in f["workflows"].items():
            if wf not in workflows:
                problems.append(f"{where}: unknown workflow {wf!r}")
            elif not isinstance(slot, str) or slot not in (workflows[wf] or {}).get("slots", {}):
                problems.append(f"{where}: workflow {wf!r} has no slot {slot!r}")
    for wf, info in workflows.items():
        slots = info.get("slots") if isinstance(info, dict) else None
        if not isinstance(slots, dict) or not slots or not isinstance(info.get("description"), str):
            problems.append(f"workflow {wf!r}: needs a description and a non-empty 'slots' object")
            continue
        for slot, default in slots.items():
            f = names.get(str(default).lower())
            if f is None:
                problems.append(f"workflow {wf!r} slot {slot!r}: default {default!r} is not a catalogued file")
            elif f.get("workflows", {}).get(wf) != slot:
                problems.append(f"workflow {wf!r} slot {slot!r}: {default!r} does not list that slot")
    if data.get("default") not in workflows:
        problems.append(f"default {data.get('default')!r} is not a workflow")
    return problems


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    """Read and validate the catalogue (``catalog.json`` beside this module unless ``path``)."""
    path = os.fspath(path) if path is not None else DEFAULT_PATH
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise WanFileError(path, "catalogue file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise WanFileError(path, f"cannot read the catalogue: {exc}") from None
    problems = validate(data)
    if problems:
        raise WanFileError(path, "invalid catalogue: " + "; ".join(problems[:5]))
    files = tuple(
        ModelFile(name=f["name"], role=f["role"], variant=f["variant"], format=f["format"], repo=f["repo"],
                  path=f["path"], revision=f["revision"], folder=f["folder"], filename=f["filename"],
                  size=f.get("size"), sha256=f.get("sha256"), workflows=dict(f["workflows"]),
                  description=f["description"], checksum_source=f.get("checksum_source"))
        for f in data["files"])
    workflows = {k: Workflow(k, v["description"], dict(v["slots"])) for k, v in data["workflows"].items()}
    return Catalog(files=files, workflows=workflows, default=data["default"], path=path)
