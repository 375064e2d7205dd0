"""A Git repository served on loopback over smart HTTP (`git http-backend`), for Flux's
source-controller to clone the rendered output from, as it clones a team's real repository.

Read-only over HTTP (fetch and clone); commits are made in a work tree and pushed to the bare
repository on disk. Never listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .apiserver import StartError

# Commits must not depend on the user's Git identity or config (hooks, signing).
_GIT_ENV = {"GIT_AUTHOR_NAME": "modelplat", "GIT_AUTHOR_EMAIL": "modelplat@localhost",
            "GIT_COMMITTER_NAME": "modelplat", "GIT_COMMITTER_EMAIL": "modelplat@localhost",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


class _Handler(BaseHTTPRequestHandler):
    """Runs `git http-backend` as CGI for each request (Python's own CGI handler is gone in 3.13)."""

    server: "_Server"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # quiet: the tests read Flux's status, not access logs

    def _backend(self) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(os.environ, **_GIT_ENV,
                   GIT_PROJECT_ROOT=str(self.server.root), GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                   REMOTE_ADDR=self.client_address[0], GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                   HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""))
        proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env, timeout=120)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        if proc.returncode != 0 and not head:
            status, payload = 500, proc.stderr
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _backend
    do_POST = _backend


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path


class GitServer:
    """`repo_url` is what a GitRepository points at; `commit()` publishes a work tree's files."""

    def __init__(self, workdir: Path, name: str = "models"):
        if not shutil.which("git"):
            raise StartError("git is required for the engines (Flux clones the rendered output over HTTP)")
        self.workdir = workdir
        self.bare = workdir / f"{name}.git"
        self.tree = workdir / f"{name}-work"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.repo_url = ""

    def git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=cwd or self.tree, capture_output=True, text=True,
                              env=dict(os.environ, **_GIT_ENV), timeout=120)
        if proc.returncode != 0:
            raise StartError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.git("init", "--bare", "--initial-branch=main", str(self.bare), cwd=self.workdir)
        self.git("init", "--initial-branch=main", str(self.tree), cwd=self.workdir)
        self.git("remote", "add", "origin", str(self.bare))
        server = _Server(("127.0.0.1", 0), _Handler)
        server.root = self.workdir
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        self.repo_url = f"http://127.0.0.1:{server.server_address[1]}/{self.bare.name}"

    def commit(self, message: str) -> str:
        """Commits everything in the work tree (additions, changes, deletions) and pushes it;
        returns the commit's hash. An unchanged tree still gets a commit (--allow-empty)."""
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", message)
        self.git("push", "--quiet", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
