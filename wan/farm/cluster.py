"""Ray for the farm and the multi-GPU group: starting or joining a cluster, and the checks that must
fail before any job runs (Ray missing, an address that does not answer, a worker whose pack version
differs from the farm's).

Ray is optional (``pip install "comfyui-wan-nodes[multi]"``) and imported only here, when needed.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .. import __version__
from ..errors import WanInputError

RAY_HINT = 'install it with: pip install "comfyui-wan-nodes[multi]" (or pip install ray)'


def import_ray():
    try:
        import ray  # noqa: PLC0415 - optional dependency
    except ImportError as error:
        raise WanInputError(f"more than one GPU or worker needs Ray, which is not installed; {RAY_HINT}") from error
    return ray


def check_address(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` Ray address must answer on that port (Ray itself would wait a long time)."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise WanInputError(f"--address {address!r}: expected HOST:PORT of a Ray cluster's head (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise WanInputError(
            f"--address {address}: no Ray cluster answers there ({error}); start one with "
            "`ray start --head` on that machine, or leave --address out to start a local cluster") from error


def connect(address: str | None, pack_root: Path, num_cpus: int | None = None, num_gpus: int | None = None,
            env: dict[str, str] | None = None):
    """Join the cluster at ``address`` or start a local one; the ``ray`` module.

    Workers import this package from ``pack_root`` (the same path on every machine of a cluster);
    ``env``: package_alias's variables when this library is a sub-package (inside ComfyUI)."""
    ray = import_ray()
    if address:
        check_address(address)
    if ray.is_initialized():
        return ray
    env = {**(env or {}),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(pack_root), os.environ.get("PYTHONPATH")]))}
    # Ray must not hide the GPUs from an actor that asks for none: a rank pins its own device.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    options = {} if address else {"num_cpus": num_cpus, "num_gpus": num_gpus}
    # Before anything is unpickled in a worker: this package under its caller's name (package_alias).
    runtime_env = {"env_vars": env, "worker_process_setup_hook": "wan.gpus.package_alias.install"}
    ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
             runtime_env=runtime_env, **{k: v for k, v in options.items() if v is not None})
    return ray


def check_versions(versions: dict, what: str = "worker") -> None:
    """versions: worker index -> the pack version it runs; all must be this package's version."""
    wrong = {i: v for i, v in versions.items() if v != __version__}
    if wrong:
        listed = ", ".join(f"{what} {i} has {v}" for i, v in sorted(wrong.items()))
        raise WanInputError(f"the pack's version differs between machines: this one has {__version__}, {listed}; "
                            "install the same version of comfyui-wan-nodes everywhere")


def gpu_count(ray) -> int:
    return int(ray.cluster_resources().get("GPU", 0))
