"""The embedded default's nodes: ``dada node`` processes on loopback, started and stopped by the front.

So a laptop runs the same code path as a cluster: the front plans blocks and glues partial
results; the local nodes compute them, one core each. Children die with the front (PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from dada.config import NODE_SECRET_ENV, Config

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalNodes:
    def __init__(self, config: Config, count: int) -> None:
        self.config, self.count = config, count
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []

    def _args(self) -> list[str]:
        """The roots, and the settings that change numbers: the nodes read the frames the front would."""
        out = []
        for name, path in self.config.roots.items():
            out += [path] if name == "" else ["--root", f"{name}={path}"]
        for dataset in self.config.dataset_paths:
            out += ["--dataset-path", dataset]
        return out

    def start(self, timeout: float = 120.0) -> list[str]:
        """Start the nodes and wait until each answers /healthz; their URLs."""
        for _ in range(self.count):
            port = _free_port()
            cmd = [sys.executable, "-m", "dada.cli", "node", *self._args(), "--host", "127.0.0.1", "--port", str(port),
                   "--threads", str(self.config.node_threads), "--max-frames", str(self.config.max_frames)]
            env = {**os.environ, NODE_SECRET_ENV: self.config.node_secret} if self.config.node_secret else None
            self.procs.append(subprocess.Popen(cmd, preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL, env=env))
            self.urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout
        for proc, url in zip(self.procs, self.urls, strict=True):
            while True:
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"local node {url} exited with {proc.returncode}")
                try:
                    with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"local node {url} did not come up in {timeout:g} s") from None
                    time.sleep(0.1)
        return self.urls

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
