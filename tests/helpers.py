"""Test helpers: a real daemon process on loopback and a plain HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, NoReturn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0]


def http_get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 60,
             host: str = "127.0.0.1") -> Response:
    """GET a raw path (sent as given, no client-side normalisation), on loopback unless ``host`` says."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def terminate(proc: subprocess.Popen, *files) -> None:
    """Stop a process of ours (SIGTERM, then SIGKILL after 10 s; reaped either way) and close the files it
    wrote to."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for f in files:
        f.close()


class Daemon:
    """``dada serve`` in its own process; requests go over real HTTP on 127.0.0.1."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "dada.cli", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = open(os.devnull, "wb")  # noqa: SIM115
        # the daemon's log goes to a file: a pipe nobody reads fills after 64 kB and blocks the daemon
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.stderr, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dada exited: {self.output()}")
            try:
                if self.get("/healthz").status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dada did not come up within 60 s")

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 60) -> Response:
        return http_get(self.port, path, headers, timeout)

    def output(self) -> str:
        """What the daemon logged so far."""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def url(self, path: str, **query: Any) -> str:
        q = urllib.parse.urlencode(query)
        return f"{path}?{q}" if q else path

    def alive(self) -> bool:
        return self.proc.poll() is None and self.get("/healthz").status == 200

    def stop(self) -> None:
        terminate(self.proc, self.log, self.stderr)


class Proc:
    """A long-running command of ours in its own process group."""

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        terminate(self.proc)
        return self.proc.returncode


class FsServer:
    """``dadafs serve`` on a fixed port, so it can be stopped and started again at the same address."""

    def __init__(self, src: str, cache_dir: str, cache_bytes: int, fragment: int, port: int | None = None) -> None:
        self.src, self.cache_dir, self.cache_bytes, self.fragment = src, cache_dir, cache_bytes, fragment
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Proc | None = None
        self.start()

    def start(self) -> None:
        self.proc = Proc([sys.executable, "-m", "dadafs.cli", "serve", self.src, "--port", str(self.port),
                          "--cache-dir", self.cache_dir, "--cache-bytes", str(self.cache_bytes),
                          "--fragment-size", str(self.fragment)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.05)
            if not self.proc.alive():
                raise RuntimeError(self.proc.proc.stderr.read().decode())
        raise RuntimeError("dadafs serve did not come up")

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return http_get(self.port, path, headers)

    def metric(self, name: str) -> float:
        total = 0.0
        for line in self.get("/metrics").body.decode().splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


class Mount:
    """``dadafs mount --foreground`` at a folder; stopping it unmounts."""

    def __init__(self, url: str, mountpoint: str, *flags: str) -> None:
        self.mountpoint = mountpoint
        os.makedirs(mountpoint, exist_ok=True)
        self.proc = Proc([sys.executable, "-m", "dadafs.cli", "mount", url, mountpoint, "--foreground", *flags])
        deadline = time.monotonic() + 30
        while not os.path.ismount(mountpoint):
            if not self.proc.alive():
                raise RuntimeError(self.proc.proc.stderr.read().decode())
            if time.monotonic() > deadline:
                raise RuntimeError("the mount did not appear")
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        with open(os.path.join(self.mountpoint, ".dadafs-status"), "rb") as f:
            return json.loads(f.read())

    def stop(self) -> int:
        code = self.proc.stop()
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], check=False)
        return code


def expect(d: Daemon, path: str, status: int, **fields: Any) -> dict:
    """GET an error: the status, a JSON body naming it with a message, no traceback, and ``fields``."""
    r = d.get(path)
    assert r.status == status, (path, r.status, r.body)
    assert r.content_type == "application/json", path
    body = r.json()
    assert body["status"] == status and body["message"]
    assert "Traceback" not in r.body.decode()
    for k, v in fields.items():
        assert body.get(k) == v, (path, body)
    return body


def missing(message: str) -> NoReturn:
    """A part the tests need is not there: a failure under CI=true (never a silent skip), a skip elsewhere."""
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str, install: str) -> Any:
    """Import a module the tests need, or :func:`missing`."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"the {name} package is missing ({install})")
