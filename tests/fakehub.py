"""A loopback Hugging Face Hub: the routes huggingface_hub and ``convogen models pull`` call.

Real HTTP on 127.0.0.1 (threaded ``http.server``): repo info with file sizes, HEAD/GET on
``/{repo}/resolve/{rev}/{file}`` with ETag / X-Repo-Commit / Content-Length and Range, the hub's
error headers (X-Error-Code) for 401/404, and switches to cut a download half way or fail requests.

Uploads, as ``HfApi.create_repo`` and ``upload_folder`` make them: ``/api/repos/create``,
``/api/validate-yaml``, ``/api/{type}s/{repo}/preupload/{rev}`` (every file "regular": sent inline)
and ``/api/{type}s/{repo}/commit/{rev}`` (NDJSON: a header, then base64 files). Uploads need
``Authorization: Bearer <upload_token>``; what arrives is kept in :attr:`FakeHub.uploaded`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+?)(?:/revision/(?P<rev>[^/]+))?$")
UPLOAD = re.compile(
    r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/[^/]+$"
)


@dataclass
class Repo:
    files: dict[str, Path]  # repo file name -> local file served
    token: str | None = None  # private repo: needs "Authorization: Bearer <token>"
    sha: str = "a" * 40
    _digests: dict[str, str] = field(default_factory=dict)

    def sha256(self, name: str) -> str:
        if name not in self._digests:
            digest = hashlib.sha256()
            with self.files[name].open("rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
            self._digests[name] = digest.hexdigest()
        return self._digests[name]


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before cutting
    fail_gets: int = 0  # answer the next N file GETs with 503
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range
    url: str = ""
    upload_token: str = "hf_upload_token"
    created: dict[str, dict] = field(default_factory=dict)  # repo id -> the create request's JSON
    uploaded: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo id -> path -> bytes
    commits: list[dict] = field(default_factory=list)  # commit headers, in order
    auth_seen: list[str | None] = field(default_factory=list)  # Authorization of every upload call

    def gets(self, name: str) -> list[str | None]:
        """The Range headers of the GETs for one file, in order."""
        return [r for m, p, r in self.log if m == "GET" and p.endswith("/" + name)]


def make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def _error(self, status: int, code: str | None, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _repo(self, repo_id: str, rev: str | None) -> Repo | None:
            repo = hub.repos.get(repo_id)
            auth = self.headers.get("Authorization")
            if repo is None:
                self._error(404 if auth else 401, "RepoNotFound", "Repository not found")
                return None
            if repo.token and auth != f"Bearer {repo.token}":
                self._error(401, "RepoNotFound", "Invalid username or password.")
                return None
            if rev not in (None, "main", repo.sha):
                self._error(404, "RevisionNotFound", "Invalid rev id: " + rev)
                return None
            return repo

        def do_GET(self) -> None:
            self._serve()

        def _json(self, status: int, data: object) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hub.log.append(("POST", path, None))
            auth = self.headers.get("Authorization")
            hub.auth_seen.append(auth)
            if auth != f"Bearer {hub.upload_token}":
                self._error(401, None, "Invalid credentials in Authorization header")
                return
            if path == "/api/validate-yaml":
                self._json(200, {"errors": [], "warnings": []})
                return
            if path == "/api/repos/create":
                request = json.loads(body)
                repo_id = f"{request.get('organization') or 'me'}/{request['name']}"
                if repo_id in hub.created:
                    self._error(409, None, "You already created this repo")
                    return
                hub.created[repo_id] = request
                self._json(200, {"url": f"{hub.url}/datasets/{repo_id}", "name": repo_id})
                return
            match = UPLOAD.match(path)
            if not match or match["repo"] not in hub.created:
                self._error(404, "RepoNotFound", "Repository not found")
                return
            if match["op"] == "preupload":
                files = json.loads(body)["files"]
                modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                self._json(200, {"files": modes})
                return
            files = hub.uploaded.setdefault(match["repo"], {})
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    hub.commits.append(item["value"])
                elif item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            oid = hashlib.sha1(body).hexdigest()
            self._json(
                200, {"commitUrl": f"{hub.url}/datasets/{match['repo']}/commit/{oid}", "commitOid": oid}
            )

        def do_HEAD(self) -> None:
            self._serve()

        def _serve(self) -> None:
            path = self.path.split("?", 1)[0]
            hub.log.append((self.command, path, self.headers.get("Range")))
            api = API.match(path)
            if api:
                repo = self._repo(api["repo"], api["rev"])
                if repo is None:
                    return
                siblings = []
                for name, local in repo.files.items():
                    size = local.stat().st_size
                    siblings.append(
                        {
                            "rfilename": name,
                            "size": size,
                            "blobId": hashlib.sha1(name.encode()).hexdigest(),
                            "lfs": {"size": size, "sha256": repo.sha256(name), "pointerSize": 134},
                        }
                    )
                body = json.dumps(
                    {
                        "_id": "x",
                        "id": api["repo"],
                        "sha": repo.sha,
                        "private": bool(repo.token),
                        "tags": ["gguf"],
                        "siblings": siblings,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)
                return
            match = RESOLVE.match(path)
            if not match:
                self._error(404, None, "no such route")
                return
            repo = self._repo(match["repo"], match["rev"])
            if repo is None:
                return
            name = match["file"]
            if name not in repo.files:
                self._error(404, "EntryNotFound", f"{name} does not exist")
                return
            if self.command == "GET" and hub.fail_gets > 0:
                hub.fail_gets -= 1
                self._error(503, None, "try later")
                return
            local = repo.files[name]
            size = local.stat().st_size
            start = 0
            ranged = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
            if ranged and self.command == "GET":
                start = int(ranged[1])
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", repo.sha)
            self.send_header("ETag", f'"{repo.sha256(name)}"')
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(size - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            cut = hub.cut_once.pop(name, None)
            with local.open("rb") as handle:
                handle.seek(start)
                remaining = size - start if cut is None else max(0, cut - start)
                while remaining > 0:
                    block = handle.read(min(remaining, 1 << 20))
                    if not block:
                        break
                    self.wfile.write(block)
                    remaining -= len(block)
            if cut is not None:  # drop the connection mid-file
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

    return Handler


def start(hub: FakeHub) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
