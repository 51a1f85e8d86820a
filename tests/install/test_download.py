"""Downloads against a stand-in hub on 127.0.0.1 (tests/support/hubstub.py) through huggingface_hub itself.

Checked: files land under <comfyui>/models/<folder>/<filename> byte for byte; HF_ENDPOINT and HF_TOKEN
are read at call time (the token reaches the hub, not the CDN); a .part from an earlier run is resumed
with a Range request; a connection broken mid-file is resumed; a sha256 mismatch (against the
catalogue, or against the hub's LFS ETag when the catalogue has none) leaves nothing under the final
name; a 404 and an unreachable hub give one clear sentence.
"""

import hashlib
import json
import os

import pytest

from hubstub import HubStub
from wan.install import download as dl
from wan.install.catalog import load_catalog

REPO = "Test-Org/tiny_repackaged"


def blob(n, seed):
    return bytes((i * 7 + seed * 13) % 251 for i in range(n))


DIT = blob(300_000, 1)  # large enough for several chunks, so a broken connection lands mid-file
VAE = blob(5_000, 2)
CHUNK = 65536


def write_catalog(path, *, dit_sha=True, vae_sha=False):
    def entry(name, role, variant, path_in_repo, folder, data, with_sha, wf_slot):
        return {"name": name, "role": role, "variant": variant, "format": "safetensors", "repo": REPO,
                "path": path_in_repo, "revision": "main", "folder": folder,
                "filename": path_in_repo.rsplit("/", 1)[-1], "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest() if with_sha else None,
                "checksum_source": "written by the test" if with_sha else None,
                "workflows": {"t2v": wf_slot}, "description": name}
    data = {"schema": 1, "about": "test", "default": "t2v",
            "workflows": {"t2v": {"description": "tiny", "slots": {"dit": "tiny_dit", "vae": "tiny_vae"}}},
            "files": [entry("tiny_dit", "dit", "t2v_1_3b", "split_files/diffusion_models/tiny_dit.safetensors",
                            "diffusion_models", DIT, dit_sha, "dit"),
                      entry("tiny_vae", "vae", "wan21", "split_files/vae/tiny vae.safetensors", "vae", VAE,
                            vae_sha, "vae")]}
    path.write_text(json.dumps(data))
    return load_catalog(path)


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    # conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported; these tests talk to a local stub only.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    # huggingface_hub writes whole 10 MB chunks; smaller ones let a tiny file break off mid-way
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with HubStub() as stub:
        monkeypatch.setenv("HF_ENDPOINT", stub.endpoint)
        yield stub


def test_download_places_files_and_honours_token_and_endpoint(hub, tmp_path):
    cat = write_catalog(tmp_path / "c.json")
    hub.add(REPO, "split_files/diffusion_models/tiny_dit.safetensors", DIT, lfs=True)
    hub.add(REPO, "split_files/vae/tiny vae.safetensors", VAE, lfs=False)
    done, failed = dl.download_files(cat.resolve(["t2v"]), tmp_path / "ComfyUI", progress=False)
    assert failed == []
    assert [r.status for r in done] == ["downloaded", "downloaded"]
    dit = tmp_path / "ComfyUI/models/diffusion_models/tiny_dit.safetensors"
    vae = tmp_path / "ComfyUI/models/vae/tiny vae.safetensors"
    assert dit.read_bytes() == DIT and vae.read_bytes() == VAE
    assert not list((tmp_path / "ComfyUI").rglob("*.part"))
    resolve = [r for r in hub.requests if "/resolve/" in r.path]
    assert resolve and all(r.headers.get("authorization") == "Bearer hf_test_token" for r in resolve)
    cdn = hub.gets("/cdn/")
    assert len(cdn) == 1 and "authorization" not in cdn[0].headers
    # a second run finds the files in place and fetches nothing
    n = len(hub.requests)
    done, failed = dl.download_files(cat.resolve(["t2v"]), tmp_path / "ComfyUI", progress=False)
    assert [r.status for r in done] == ["present", "present"] and len(hub.requests) == n


def test_resume_of_a_part_left_by_an_earlier_run(hub, tmp_path):
    cat = write_catalog(tmp_path / "c.json")
    hub.add(REPO, "split_files/diffusion_models/tiny_dit.safetensors", DIT)
    dest = tmp_path / "ComfyUI/models/diffusion_models/tiny_dit.safetensors"
    dest.parent.mkdir(parents=True)
    half = len(DIT) // 2
    (dest.parent / (dest.name + ".part")).write_bytes(DIT[:half])
    r = dl.download_file(cat.file("tiny_dit"), tmp_path / "ComfyUI", progress=False)
    assert r.status == "downloaded" and dest.read_bytes() == DIT
    assert [g.headers.get("range") for g in hub.gets("/cdn/")] == [f"bytes={half}-"]


def test_connection_broken_mid_file_is_resumed(hub, tmp_path, monkeypatch):
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.time, "sleep", lambda s: None)  # its retry pause
    cat = write_catalog(tmp_path / "c.json")
    hub.add(REPO, "split_files/diffusion_models/tiny_dit.safetensors", DIT, break_at=100_000, break_times=1)
    r = dl.download_file(cat.file("tiny_dit"), tmp_path / "ComfyUI", progress=False)
    assert open(r.path, "rb").read() == DIT
    # the first GET broke at byte 100000 after one whole chunk was written; the retry asks for the rest
    assert [g.headers.get("range") for g in hub.gets("/cdn/")] == [None, f"bytes={CHUNK}-"]


def test_connection_that_keeps_breaking_leaves_a_part_to_resume(hub, tmp_path, monkeypatch):
    import huggingface_hub.file_download as fd

    monkeypatch.setattr(fd.time, "sleep", lambda s: None)
    cat = write_catalog(tmp_path / "c.json")
    hub.add(REPO, "split_files/diffusion_models/tiny_dit.safetensors", DIT, break_at=100_000, break_times=100)
    with pytest.raises(dl.DownloadError, match="broke off after .* run the download again to resume"):
        dl.download_file(cat.file("tiny_dit"), tmp_path / "ComfyUI", progress=False)
    dest = tmp_path / "ComfyUI/models/diffusion_models/tiny_dit.safetensors"
    part = dest.parent / (dest.name + ".part")
    assert not dest.exists() and part.stat().st_size == CHUNK
    assert DIT.startswith(part.read_bytes())
    hub.files[(REPO, "main", "split_files/diffusion_models/tiny_dit.safetensors")].break_times = 0
    dl.download_file(cat.file("tiny_dit"), tmp_path / "ComfyUI", progress=False)
    assert dest.read_bytes() == DIT and not part.exists()


@pytest.mark.parametrize("catalogue_sha", [True, False], ids=["catalogue-sha", "hub-etag"])
def test_wrong_bytes_never_reach_the_final_name(hub, tmp_path, catalogue_sha):
    cat = write_catalog(tmp_path / "c.json", dit_sha=catalogue_sha)
    hub.add(REPO, "split_files/diffusion_models/tiny_dit.safetensors", DIT, corrupt=True)
    with pytest.raises(dl.DownloadError, match="sha256 mismatch") as exc:
        dl.download_file(cat.file("tiny_dit"), tmp_path / "ComfyUI", progress=False)
    assert hashlib.sha256(DIT).hexdigest() in str(exc.value)
    folder = tmp_path / "ComfyUI/models/diffusion_models"
    assert os.listdir(folder) == []


def test_missing_file_on_the_hub(hub, tmp_path):
    cat = write_catalog(tmp_path / "c.json")
    with pytest.raises(dl.DownloadError, match=r"tiny_dit.safetensors \(revision main\): file not found at "
                       r"http://127.0.0.1:\d+ \(404\)"):
        dl.download_file(cat.file("tiny_dit"), tmp_path / "ComfyUI", progress=False)
    assert not (tmp_path / "ComfyUI/models/diffusion_models/tiny_dit.safetensors").exists()


def test_unreachable_hub(monkeypatch, tmp_path):
    import socket

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    cat = write_catalog(tmp_path / "c.json")
    done, failed = dl.download_files(cat.resolve(["t2v"]), tmp_path / "ComfyUI", progress=False)
    assert done == [] and len(failed) == 2
    assert all(e.unreachable and str(e).startswith(f"cannot reach http://127.0.0.1:{port}: ") for _, e in failed)
    # endpoint read at call time: the URL to fetch by hand names the endpoint set now
    assert dl.file_url(cat.file("tiny_vae")) == (f"http://127.0.0.1:{port}/{REPO}/resolve/main/"
                                                "split_files/vae/tiny%20vae.safetensors")


def test_cli_download_and_unreachable_message(hub, tmp_path, capsys, monkeypatch):
    from wan.cli import main

    write_catalog(tmp_path / "c.json")
    hub.add(REPO, "split_files/diffusion_models/tiny_dit.safetensors", DIT)
    hub.add(REPO, "split_files/vae/tiny vae.safetensors", VAE)
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path / "CUI"))
    assert main(["models", "--catalog", str(tmp_path / "c.json"), "download", "default", "--no-progress"]) == 0
    assert (tmp_path / "CUI/models/vae/tiny vae.safetensors").read_bytes() == VAE
    assert "downloaded:" in capsys.readouterr().out
    # unknown name: usage error
    assert main(["models", "--catalog", str(tmp_path / "c.json"), "download", "nope"]) == 2
    # hub down: one sentence and the files to fetch by hand, no traceback
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    rc = main(["models", "--catalog", str(tmp_path / "c.json"), "download", "t2v", "--comfyui", str(tmp_path / "B")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "error: cannot reach http://127.0.0.1:9: " in err and "download these files by hand:" in err
    assert f"http://127.0.0.1:9/{REPO}/resolve/main/split_files/diffusion_models/tiny_dit.safetensors" in err
    assert str(tmp_path / "B/models/vae/tiny vae.safetensors") in err
