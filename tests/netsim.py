"""A dada cluster on one machine: every node in its own network namespace behind shaped links.

The topology of a beamline cluster, made of real parts (root only)::

    head (10.77.0.1)                 switch (a bridge)              node k (10.77.0.(10+k))
    dadafs serve  ─┐                                                 dadafs mount of the head's server
    HAProxy       ─┼─ eth0 ══ uplink ══ uplink ─ br0 ─ n<k> ══ link ══ eth0
    front         ─┘                                                 dada node --threads 1 reading the mount

Each link is a veth pair shaped with ``tbf`` at both ends (both directions). The head runs the storage's
``dadafs serve``, HAProxy configured from deploy/haproxy.cfg (without its bounded load: the cache-affinity
setting, deploy/README.md) and the front (``dada serve --lb``); each node
mounts the head's dadafs server and computes blocks from that mount. Bytes per link are the switch ports'
counters; CPU seconds come from /proc per process.

Every name starts with ``dadasim-<pid>``: namespaces, the folder of mounts and logs. ``Sim.close`` removes
everything it made (processes by their id, mounts, namespaces) and runs however the run ends (``with``,
atexit); ``sweep`` removes what a run whose process is gone left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from balancers import Balancer, start_balancer
from helpers import Response, http_get, terminate

PREFIX = "dadasim"
SUBNET = "10.77.0"
HEAD_IP = f"{SUBNET}.1"
NODE_PORT, FS_PORT = 8111, 8110
SECRET = "netsim-node-secret"
CLONE_NEWNET = 0x40000000
GBIT = 1e9
T = TypeVar("T")


def node_ip(k: int) -> str:
    return f"{SUBNET}.{10 + k}"


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def usable() -> str | None:
    """Why this machine cannot run the simulation (None when it can): root, ip, tc, nsenter, fusermount3."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc", "nsenter", "fusermount3"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"{tool} is not installed"
    return None


def _mounts() -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Remove what earlier runs whose process is gone left behind: their mounts, processes, namespaces, folders."""
    removed = []
    stale = re.compile(rf"^{PREFIX}-(\d+)-")
    for point in _mounts():
        m = re.search(rf"/{PREFIX}-(\d+)-", point)
        if m and not _alive(int(m.group(1))):
            run("fusermount3", "-u", "-z", point, check=False)
            removed.append(point)
    for ns in run("ip", "netns", "list").stdout.split():
        m = stale.match(ns)
        if m and not _alive(int(m.group(1))):
            for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)
            removed.append(ns)
    for path in os.listdir(tempfile.gettempdir()):
        m = stale.match(path)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(os.path.join(tempfile.gettempdir(), path), ignore_errors=True)
    return removed


def _setns(name: str) -> None:
    """Move the calling thread (only it: a network namespace is per thread) into namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
    finally:
        os.close(fd)


def get(host: str, port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 600) -> Response:
    return http_get(port, path, headers, timeout, host=host)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Proc:
    """A process of the simulation, started in a namespace, logging to a file."""

    name: str
    cmd: list[str]
    log: str
    proc: subprocess.Popen | None = None

    def start(self, ns: str, env: dict[str, str] | None = None) -> Proc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", *self.cmd], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **(env or {})})
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def output(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()[-3000:]

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)


@dataclass
class Links:
    """Counters of the switch's ports: bytes both ways per node link and on the head's uplink."""

    nodes: list[int]
    uplink: int

    def __sub__(self, other: Links) -> Links:
        return Links([a - b for a, b in zip(self.nodes, other.nodes, strict=True)], self.uplink - other.uplink)


@dataclass
class Sim:
    """The namespaces, links and processes of one simulated cluster of ``n`` nodes.

    ``factor`` slows every link alike (1 Gbit/s node links and a 2x10 Gbit/s uplink, times the factor), so
    that links and the nodes' shared CPU are slowed by the same amount."""

    n: int
    root: str  # the storage: the folder the head's dadafs server serves, and the front reads
    factor: float = 1.0
    node_gbit: float = 1.0
    uplink_gbit: float = 20.0
    fragment: int = 256 << 10  # dadafs fragment size: well under a block's compressed bytes
    mount_cache: int = 256 << 20
    servers: int = 1  # dadafs server processes on the head (the nodes' mounts spread over them)
    readahead: int = 0
    # HAProxy's bounded load: None or 0 for none (deploy/haproxy.cfg without its hash-balance-factor line, the
    # cache-affinity setting of deploy/README.md), else this factor
    balance_factor: int | None = None
    front_flags: tuple[str, ...] = ()  # e.g. ("--block-frames", "8") for small test scans
    tag: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}-{int(time.time() * 1000) % 10**6}")
    procs: dict[str, Proc] = field(default_factory=dict)
    balancer: Balancer | None = None
    _pools: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix=f"{self.tag}-")
        self.front_port = 8000
        atexit.register(self.close)

    # -- namespaces and links --------------------------------------------------------------------

    def ns(self, who: str) -> str:
        return f"{self.tag}-{who}"

    def mount_point(self, k: int) -> str:
        return os.path.join(self.dir, f"mnt{k}")

    def build_network(self) -> None:
        for who in ["sw", "head", *(f"n{k}" for k in range(1, self.n + 1))]:
            run("ip", "netns", "add", self.ns(who))
            self._namespaces.append(self.ns(who))
            run("ip", "-n", self.ns(who), "link", "set", "lo", "up")
        sw = self.ns("sw")
        run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", sw, "link", "set", "br0", "up")
        self._veth("head", "uplink", HEAD_IP)
        for k in range(1, self.n + 1):
            self._veth(f"n{k}", f"n{k}", node_ip(k))
        self.shape_all()

    def _veth(self, who: str, port: str, ip: str) -> None:
        sw, ns = self.ns("sw"), self.ns(who)
        run("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw)
        run("ip", "-n", sw, "link", "set", port, "master", "br0")
        run("ip", "-n", sw, "link", "set", port, "up")
        run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")

    def shape(self, ns: str, dev: str, gbit: float) -> None:
        """``tbf`` on the device's egress at ``gbit`` x the time factor."""
        rate = gbit * GBIT * self.factor
        burst = max(256 * 1024, int(rate / 8 * 0.004))  # 4 ms at the rate; at least a few GSO segments
        run("tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{int(rate)}bit",
            "burst", str(burst), "latency", "100ms")

    def shape_node(self, k: int, gbit: float) -> None:
        self.shape(self.ns(f"n{k}"), "eth0", gbit)
        self.shape(self.ns("sw"), f"n{k}", gbit)

    def shape_all(self) -> None:
        self.shape(self.ns("head"), "eth0", self.uplink_gbit)
        self.shape(self.ns("sw"), "uplink", self.uplink_gbit)
        for k in range(1, self.n + 1):
            self.shape_node(k, self.node_gbit)

    def link(self, k: int, up: bool, from_switch: bool = False) -> None:
        """Node k's link down or up: from its own end (a cut it does not announce), or from the switch's."""
        ns, dev = (self.ns("sw"), f"n{k}") if from_switch else (self.ns(f"n{k}"), "eth0")
        run("ip", "-n", ns, "link", "set", dev, "up" if up else "down")

    def links(self) -> Links:
        stats = {i["ifname"]: i["stats64"] for i in json.loads(run("ip", "-n", self.ns("sw"), "-j", "-s", "link",
                                                                      "show").stdout)}

        def both(dev: str) -> int:
            return stats[dev]["rx"]["bytes"] + stats[dev]["tx"]["bytes"]

        return Links([both(f"n{k}") for k in range(1, self.n + 1)], both("uplink"))

    def within(self, who: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on a thread living in namespace ``who`` (sockets it opens and processes it starts are there)."""
        ns = self.ns(who)
        if ns not in self._pools:
            self._pools[ns] = ThreadPoolExecutor(4, initializer=_setns, initargs=(ns,))
        return self._pools[ns].submit(fn, *args).result()

    # -- processes -------------------------------------------------------------------------------

    def _start(self, name: str, who: str, cmd: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None,
               timeout: float = 60) -> Proc:
        p = self.procs.get(name) or Proc(name, cmd, os.path.join(self.dir, f"{name}.log"))
        self.procs[name] = p.start(self.ns(who), env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not p.alive():
                raise RuntimeError(f"{name} exited with {p.proc.returncode}:\n{p.output()}")
            with contextlib.suppress(OSError):
                if ready():
                    return p
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not come up within {timeout:.0f} s:\n{p.output()}")

    def _healthy(self, who: str, host: str, port: int) -> bool:
        return self.within(who, lambda: get(host, port, "/healthz", timeout=2).status == 200)

    def fs_port(self, i: int) -> int:
        return FS_PORT if i == 0 else 8120 + i

    def start_fs(self, i: int = 0) -> Proc:
        """The storage's ``i``-th dadafs server on the head, ``fs`` (then ``fs2``, ``fs3`` ...; started again at
        the same address after a stop). Several share the source, each with its own cache and port."""
        port = self.fs_port(i)
        cmd = [sys.executable, "-m", "dadafs.cli", "serve", self.root, "--host", "0.0.0.0", "--port", str(port),
               "--cache-dir", os.path.join(self.dir, f"fscache{i or ''}"), "--cache-bytes", str(4 << 30),
               "--fragment-size", str(self.fragment)]
        return self._start(f"fs{i + 1 if i else ''}", "head", cmd, lambda: self._healthy("head", HEAD_IP, port))

    def start_mount(self, k: int) -> Proc:
        """Node k's mount, of dadafs server (k - 1) mod ``servers``: the nodes spread over the servers."""
        point = self.mount_point(k)
        os.makedirs(point, exist_ok=True)
        server = f"http://{HEAD_IP}:{self.fs_port((k - 1) % self.servers)}"
        cmd = [sys.executable, "-m", "dadafs.cli", "mount", server, point, "--foreground",
               "--cache-bytes", str(self.mount_cache), "--readahead", str(self.readahead)]
        return self._start(f"mount{k}", f"n{k}", cmd, lambda: os.path.ismount(point))

    def start_node(self, k: int) -> Proc:
        cmd = [sys.executable, "-m", "dada.cli", "node", self.mount_point(k), "--threads", "1",
               "--host", "0.0.0.0", "--port", str(NODE_PORT)]
        return self._start(f"node{k}", f"n{k}", cmd, lambda: self._healthy("head", node_ip(k), NODE_PORT),
                           env={"DADA_NODE_SECRET": SECRET})

    def start_front(self) -> Proc:
        conf = os.path.join(self.dir, "front.toml")
        with open(conf, "w") as f:  # no result cache anywhere: every request is computed by the nodes
            f.write("cache_memory_bytes = 0\nanswer_cache_bytes = 0\n")
        cmd = [sys.executable, "-m", "dada.cli", "serve", self.root, "--cache-dir", "none", "--config", conf,
               "--lb", self.balancer.url, "--lb-concurrency", str(2 * self.n),
               "--host", "127.0.0.1", "--port", str(self.front_port), *self.front_flags]
        return self._start("front", "head", cmd, lambda: self._healthy("head", "127.0.0.1", self.front_port),
                           env={"DADA_NODE_SECRET": SECRET})

    def _factor(self, config: str) -> str:
        """deploy/haproxy.cfg with its bounded load replaced: none (every block on its own node, what a cluster
        sized for its storage uplink runs), or ``hash-balance-factor`` to compare."""
        shipped = re.compile(r"^\s*hash-balance-factor\s+\d+.*\n(?:\s*#.*\n)*", re.M)
        config = shipped.sub("", config)
        if not self.balance_factor:
            return config
        hashing = re.compile(r"^(\s*)hash-type consistent.*$", re.M)
        if not hashing.search(config):
            raise AssertionError("deploy/haproxy.cfg has no 'hash-type consistent' line: update tests/netsim.py")
        return hashing.sub(rf"\g<0>\n\1hash-balance-factor {self.balance_factor}", config)

    def start(self) -> Sim:
        """Network, storage, mounts, nodes, HAProxy (deploy/haproxy.cfg) and the front; removed by ``close``."""
        try:
            self.build_network()
            for i in range(self.servers):
                self.start_fs(i)
            for k in range(1, self.n + 1):
                self.start_mount(k)
                self.start_node(k)
            backends = [f"{node_ip(k)}:{NODE_PORT}" for k in range(1, self.n + 1)]
            self.balancer = self.within("head", start_balancer, "haproxy", backends, None, 15, self._factor)
            self.start_front()
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> Sim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process we started (by its id), unmount, delete the namespaces and the folder. Idempotent."""
        if self.balancer is not None:
            self.balancer.stop()
            self.balancer = None
        for name, p in reversed(list(self.procs.items())):
            if not name.startswith("mount"):
                p.stop()
        for name, p in self.procs.items():
            if name.startswith("mount"):
                p.stop()
        self.procs.clear()
        for point in _mounts():
            if point.startswith(self.dir + "/"):
                run("fusermount3", "-u", "-z", point, check=False)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self._pools.clear()
        for ns in self._namespaces:
            run("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- asking and measuring --------------------------------------------------------------------

    def ask(self, url: str, timeout: float = 600) -> Response:
        """GET from the front (on the head's loopback)."""
        return self.within("head", get, "127.0.0.1", self.front_port, url, None, timeout)

    def mount_status(self, k: int) -> dict[str, Any]:
        with open(os.path.join(self.mount_point(k), ".dadafs-status"), "rb") as f:
            return json.loads(f.read())["data"]

    def snapshot(self) -> Snapshot:
        cpu = {name: p.cpu() for name, p in self.procs.items()}
        if self.balancer is not None:
            cpu["haproxy"] = cpu_seconds(self.balancer.proc.pid)
        reads = [self.mount_status(k) for k in range(1, self.n + 1)]
        return Snapshot(time.perf_counter(), cpu, self.links(), [r["read_bytes"] for r in reads],
                        [r["fetched_bytes"] for r in reads])


@dataclass
class Snapshot:
    """Clocks and counters at one moment; the difference of two says what a request cost."""

    wall: float
    cpu: dict[str, float]
    links: Links
    read: list[int]  # bytes each node's mount handed to the node
    fetched: list[int]  # bytes each node's mount fetched from the head

    def __sub__(self, before: Snapshot) -> Snapshot:
        return Snapshot(self.wall - before.wall, {k: v - before.cpu.get(k, 0.0) for k, v in self.cpu.items()},
                        self.links - before.links, [a - b for a, b in zip(self.read, before.read, strict=True)],
                        [a - b for a, b in zip(self.fetched, before.fetched, strict=True)])

    def node_cpu(self) -> float:
        return sum(v for k, v in self.cpu.items() if k.startswith("node"))

    def cached_share(self, k: int) -> float | None:
        """The share of node k's raw bytes its own mount's cache served (None when it read nothing)."""
        read = self.read[k - 1]
        return None if read == 0 else max(0.0, 1 - self.fetched[k - 1] / read)


def stxm_query(k: float) -> str:
    """All four channels, parameters shifted by ``k`` millionths (a new ``k``: no result cache can answer)."""
    e = k * 1e-6
    return (f"?darkfield.rmin={10 + e}&dpc.rdpc={12 + e}&azimuthal.rmin={20 + e}&radial.rmin={e}"
            "&radial.nbins=64&output=darkfield.darkfield")
