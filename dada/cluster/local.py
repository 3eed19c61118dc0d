"""The embedded default's nodes: ``dada node`` processes on loopback, started, supervised and stopped
by the front.

So a laptop runs the same code path as a cluster: the front plans blocks and places partial
results; the local nodes compute them, one core each. Children die with the front (PDEATHSIG). A
node that dies is reaped and started again on its port (after 0.5 s, doubling up to 30 s while it
keeps dying), so capacity comes back by itself; restarts are counted. Nodes run at a lower CPU
priority than the front (nice), so the front's own interactive work (a frame, a listing) is never
starved by a full-scan map that keeps every core busy.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from dada.config import NODE_SECRET_ENV, Config

PR_SET_PDEATHSIG = 1
log = logging.getLogger("dada.cluster")


NODE_NICE = 5  # a node's priority below its front's


def _child_setup() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    os.nice(NODE_NICE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalNodes:
    def __init__(self, config: Config, count: int, backoff: tuple[float, float] = (0.5, 30.0)) -> None:
        self.config, self.count = config, count
        self.procs: list[subprocess.Popen] = []
        self.urls: list[str] = []
        self.restarts = 0
        self.backoff = backoff
        self._delay: list[float] = []
        self._due: list[float] = []  # when a dead node is started again (0: none pending)
        self._since: list[float] = []  # when each node was last started
        self._stopping = False

    def _args(self) -> list[str]:
        """The roots, and the settings that change numbers: the nodes read the frames the front would."""
        out = []
        for name, path in self.config.roots.items():
            out += [path] if name == "" else ["--root", f"{name}={path}"]
        for dataset in self.config.dataset_paths:
            out += ["--dataset-path", dataset]
        return out

    def _spawn(self, port: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "dada.cli", "node", *self._args(), "--host", "127.0.0.1", "--port", str(port),
               "--threads", str(self.config.node_threads), "--max-frames", str(self.config.max_frames)]
        env = {**os.environ, NODE_SECRET_ENV: self.config.node_secret} if self.config.node_secret else None
        return subprocess.Popen(cmd, preexec_fn=_child_setup, stdin=subprocess.DEVNULL, env=env)

    def start(self, timeout: float = 120.0) -> list[str]:
        """Start the nodes and wait until each answers /healthz; their URLs."""
        for _ in range(self.count):
            port = _free_port()
            self.procs.append(self._spawn(port))
            self.urls.append(f"http://127.0.0.1:{port}")
            self._delay.append(self.backoff[0])
            self._due.append(0.0)
            self._since.append(time.monotonic())
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

    def check(self) -> None:
        """Reap nodes that died and start them again when their backoff is over (called every tick)."""
        now = time.monotonic()
        for i, proc in enumerate(self.procs):
            if self._stopping:
                return
            if proc.poll() is None:
                if now - self._since[i] > 60:
                    self._delay[i] = self.backoff[0]  # it stayed up: a later death starts the backoff afresh
                continue
            if not self._due[i]:
                self._due[i] = now + self._delay[i]
                log.warning("local node %s exited with %s; starting it again in %.1f s", self.urls[i],
                            proc.returncode, self._delay[i])
                self._delay[i] = min(2 * self._delay[i], self.backoff[1])
            elif now >= self._due[i]:
                self.procs[i] = self._spawn(int(self.urls[i].rsplit(":", 1)[1]))
                self._since[i], self._due[i] = now, 0.0
                self.restarts += 1

    def status(self) -> list[dict]:
        return [{"url": u, "pid": p.pid, "running": p.poll() is None} for u, p in zip(self.urls, self.procs,
                                                                                         strict=True)]

    def stop(self) -> None:
        self._stopping = True
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
