"""Download catalogued model files from the Hugging Face hub into a ComfyUI install.

Each file is fetched through huggingface_hub's HTTP layer (its HEAD metadata call and streaming GET,
which retries a broken connection by resuming with a Range request) into ``<name>.part`` beside its
final place. A ``.part`` left by an interrupted run is resumed, not restarted. Only a file whose
size and sha256 match (the catalogue's sha256, else the hub's LFS ETag, which is the sha256) is
renamed to its final name, atomically; a mismatched file is deleted, so a wrong file never sits
under a name a workflow loads.

The endpoint and token are read from the environment when a download starts (``HF_ENDPOINT``,
``HF_TOKEN``), not when huggingface_hub was imported.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from .catalog import ModelFile
from ..errors import WanError

DEFAULT_ENDPOINT = "https://huggingface.co"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_CHUNK = 8 * 1024 * 1024


class DownloadError(WanError):
    """A file could not be fetched or did not match what was expected.

    ``unreachable`` is true when the hub itself could not be reached (network down, offline mode),
    so that the caller can list every file to fetch by hand instead of repeating the same error.
    """

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class DownloadResult:
    file: ModelFile
    path: str
    status: str  # "downloaded" or "present"
    size: int


def hub_endpoint() -> str:
    """The hub to download from: ``HF_ENDPOINT`` as set now, else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_token() -> str | None:
    """``HF_TOKEN`` as set now; None lets huggingface_hub fall back to a stored login."""
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None


def file_url(f: ModelFile, endpoint: str | None = None) -> str:
    """The hub's resolve URL of ``f`` (also what a user downloads by hand)."""
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    return f"{endpoint}/{f.repo}/resolve/{quote(f.revision, safe='')}/{quote(f.path)}"


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in chunks so that a 30 GB file costs no memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport-level exception classes of whichever HTTP client this huggingface_hub uses."""
    import importlib

    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def _describe_hub_error(exc: Exception, f: ModelFile, endpoint: str) -> DownloadError:
    """Turn huggingface_hub/httpx errors into one readable sentence (no traceback for the user)."""
    from huggingface_hub import errors as hf_errors

    where = f"{f.repo}/{f.path} (revision {f.revision})"
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return DownloadError(f"cannot reach {endpoint}: huggingface_hub is in offline mode (HF_HUB_OFFLINE is "
                             "set); unset it to download", unreachable=True)
    if isinstance(exc, hf_errors.GatedRepoError):
        return DownloadError(f"{where}: the repository is gated; accept its terms on the hub and set HF_TOKEN")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return DownloadError(f"{where}: repository {f.repo} not found at {endpoint}, or it is private "
                             "(set HF_TOKEN to a token that may read it)")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return DownloadError(f"{where}: revision {f.revision!r} not found at {endpoint}")
    if isinstance(exc, hf_errors.EntryNotFoundError):
        return DownloadError(f"{where}: file not found at {endpoint} (404); it may have been moved or renamed")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return DownloadError(f"{where}: the hub answered HTTP {status}")
    if isinstance(exc, _network_errors()):
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return DownloadError(f"cannot reach {endpoint}: {reason}", unreachable=True)
    return DownloadError(f"{where}: {type(exc).__name__}: {exc}")


def _remote_metadata(f: ModelFile, endpoint: str, token: str | None):
    from huggingface_hub import get_hf_file_metadata

    try:
        return get_hf_file_metadata(file_url(f, endpoint), token=token if token else None, endpoint=endpoint)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear sentence
        raise _describe_hub_error(exc, f, endpoint) from None


def _quiet_tqdm():
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Quiet(hf_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Quiet


def download_file(f: ModelFile, comfyui: str | os.PathLike, *, endpoint: str | None = None,
                  token: str | None = None, progress: bool = True) -> DownloadResult:
    """Fetch ``f`` into ``<comfyui>/models/<folder>/<filename>``; resumes a ``.part`` left behind.

    A file already under its final name is left alone when its size agrees with the catalogue
    (``verify`` checks its contents). Raises DownloadError with a one-line reason.
    """
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    token = token if token is not None else hub_token()
    dest = f.local_path(comfyui)
    if os.path.isfile(dest):
        have = os.path.getsize(dest)
        if f.size is None or have == f.size:
            return DownloadResult(f, dest, "present", have)
        raise DownloadError(f"{dest} exists but holds {have} bytes, not the {f.size} published; move it away "
                            "and run the download again")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise DownloadError(f"cannot reach {endpoint}: offline mode is on (HF_HUB_OFFLINE is set); unset it "
                            "to download", unreachable=True)
    meta = _remote_metadata(f, endpoint, token)
    size = f.size if f.size is not None else meta.size
    if f.size is not None and meta.size is not None and meta.size != f.size:
        raise DownloadError(f"{f.repo}/{f.path}: the hub serves {meta.size} bytes but the catalogue expects "
                            f"{f.size}; the published file changed (update catalog.json)")
    hub_sha = meta.etag.lower() if meta.etag and _SHA256.match(meta.etag.lower()) else None
    expected_sha = f.sha256 or hub_sha
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    if size is not None and have > size:
        have = 0  # longer than the file: not a prefix of it
    if size is not None:
        free = shutil.disk_usage(os.path.dirname(dest)).free
        if free < size - have:
            raise DownloadError(f"{f.filename}: needs {size - have} more bytes but {os.path.dirname(dest)} has "
                                f"{free} free")
    headers = build_hf_headers(token=token if token else None)
    url = meta.location
    if urlsplit(url).netloc != urlsplit(endpoint).netloc:
        headers.pop("authorization", None)  # a signed CDN address: the token must not leave the hub
    try:
        with open(part, "r+b" if have else "wb") as fh:
            fh.truncate(have)
            fh.seek(have)
            http_get(url, fh, resume_size=have, headers=headers, expected_size=size,
                     displayed_filename=f.filename, **({} if progress else {"tqdm_class": _quiet_tqdm()}))
            fh.flush()
            os.fsync(fh.fileno())
    except Exception as exc:  # noqa: BLE001
        got = os.path.getsize(part) if os.path.isfile(part) else 0
        err = _describe_hub_error(exc, f, endpoint)
        if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
            os.unlink(part)  # the server sent more or less than it announced: start over next time
            raise DownloadError(f"{f.filename}: the download ended at {got} bytes, not {size}; the partial file "
                                "was removed, run the download again") from None
        raise DownloadError(f"{f.filename}: download broke off after {got} of {size or '?'} bytes "
                            f"({err}); run the download again to resume from {part}") from None
    got = os.path.getsize(part)
    if size is not None and got != size:
        os.unlink(part)
        raise DownloadError(f"{f.filename}: received {got} bytes, expected {size}; the partial file was removed")
    if expected_sha is not None:
        actual = sha256_of(part)
        if actual != expected_sha:
            os.unlink(part)
            whose = "the catalogue" if f.sha256 else "the hub"
            raise DownloadError(f"{f.filename}: sha256 mismatch: {whose} publishes {expected_sha}, the downloaded "
                                f"file has {actual}; it was deleted, nothing was installed")
    os.replace(part, dest)
    return DownloadResult(f, dest, "downloaded", got)


def download_files(files: list[ModelFile], comfyui: str | os.PathLike, *, endpoint: str | None = None,
                   token: str | None = None, progress: bool = True,
                   ) -> tuple[list[DownloadResult], list[tuple[ModelFile, DownloadError]]]:
    """Download each file in turn; returns (results, failures). Stops trying once the hub is unreachable."""
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    done: list[DownloadResult] = []
    failed: list[tuple[ModelFile, DownloadError]] = []
    unreachable: DownloadError | None = None
    for f in files:
        if unreachable is not None and not os.path.isfile(f.local_path(comfyui)):
            failed.append((f, unreachable))
            continue
        try:
            done.append(download_file(f, comfyui, endpoint=endpoint, token=token, progress=progress))
        except DownloadError as exc:
            failed.append((f, exc))
            if exc.unreachable:
                unreachable = exc
    return done, failed
