"""Test helpers: a real daemon process on loopback and a plain HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any


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


class Daemon:
    """``dada serve`` in its own process; requests go over real HTTP on 127.0.0.1."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "dada.cli", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.log = open(os.devnull, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dada exited: {self.proc.stderr.read().decode()}")
            try:
                if self.get("/healthz").status == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dada did not come up within 60 s")

    def get(self, path: str, headers: dict[str, str] | None = None, timeout: float = 60) -> Response:
        """GET a raw path (sent as given, no client-side normalisation)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def url(self, path: str, **query: Any) -> str:
        q = urllib.parse.urlencode(query)
        return f"{path}?{q}" if q else path

    def alive(self) -> bool:
        return self.proc.poll() is None and self.get("/healthz").status == 200

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
