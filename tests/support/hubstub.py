"""A stand-in for the Hugging Face hub on 127.0.0.1, serving files a test wrote.

It answers the calls huggingface_hub makes to download one file: ``HEAD`` and ``GET``
``/{repo}/resolve/{revision}/{path}`` with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``, and,
for files marked as LFS, a 302 to a "CDN" address on another host name (``localhost`` instead of
``127.0.0.1``, as the real hub sends to its CDN) carrying ``X-Linked-Etag`` (the sha256) and
``X-Linked-Size``. GETs honour ``Range: bytes=N-`` with a 206. Faults for the tests:
``break_at`` closes the connection when the body reaches that byte of the file (for the next
``break_times`` GETs), ``corrupt`` serves other bytes of the same length than the ETag announces, and a path that
was never added answers 404 with ``X-Error-Code: EntryNotFound``. Every request is logged.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class StubFile:
    data: bytes
    lfs: bool = True
    break_at: int | None = None
    break_times: int = 0
    corrupt: bool = False
    sha256: str = field(init=False)

    def __post_init__(self):
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    def body(self) -> bytes:
        return bytes(b ^ 0xFF for b in self.data) if self.corrupt else self.data


@dataclass
class Request:
    method: str
    path: str
    headers: dict


class HubStub:
    def __init__(self):
        self.files: dict[tuple[str, str, str], StubFile] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                stub._handle(self, head=True)

            def do_GET(self):
                stub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo: str, path: str, data: bytes, revision: str = "main", **faults) -> StubFile:
        f = StubFile(data, **faults)
        self.files[(repo, revision, path)] = f
        return f

    def gets(self, kind: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and kind in r.path]

    # -- request handling -------------------------------------------------------------------
    def _find(self, url_path: str) -> tuple[str, StubFile | None]:
        parts = unquote(url_path.split("?", 1)[0]).lstrip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, revision, path = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            return "resolve", self.files.get((repo, revision, path))
        if len(parts) == 2 and parts[0] == "cdn":
            return "cdn", next((f for f in self.files.values() if f.sha256 == parts[1]), None)
        return "other", None

    def _handle(self, h: BaseHTTPRequestHandler, head: bool):
        with self._lock:
            self.requests.append(Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}))
        kind, f = self._find(h.path)
        if f is None:
            h.send_response(404)
            h.send_header("X-Error-Code", "EntryNotFound" if kind == "resolve" else "RepoNotFound")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if kind == "resolve" and f.lfs:
            h.send_response(302)
            h.send_header("Location", f"http://localhost:{self.port}/cdn/{f.sha256}")
            h.send_header("X-Repo-Commit", COMMIT)
            h.send_header("X-Linked-Etag", f'"{f.sha256}"')
            h.send_header("X-Linked-Size", str(len(f.data)))
            h.send_header("ETag", '"pointer-etag"')
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        body = f.body()
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and not head:
            start = int(rng[len("bytes="):].split("-")[0])
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("ETag", f'"{f.sha256}"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.end_headers()
        if head:
            return
        payload = body[start:]
        if f.break_at is not None and f.break_times > 0:
            f.break_times -= 1
            h.wfile.write(body[start:max(start, f.break_at)])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(payload)
