"""The shipped load balancer configs (deploy/) run for real in front of tiny echo backends on loopback.

What a dada cluster needs from its balancer: a job URL always reaches the same node, and so does
every job URL of the same block (path) whatever its parameters (query), as with the front's own
ring, since that node's caches hold the block's frames; different blocks spread; a node that leaves
moves only its own blocks (the other nodes' caches stay warm) and gets them back when it returns.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from balancers import Balancer, free_port, start_balancer
from helpers import http_get

from dada.cluster.nodes import twin_url

ALL = ["haproxy", "nginx", "lighttpd"]
N_URIS = 60


def block_uris(n: int = N_URIS, query: str = "channels=darkfield&darkfield.rmin=10") -> list[str]:
    """Job URLs as the front sends them: the path names a block of frames, the query its parameters."""
    return [f"/_block/p10/cells/scan_0001/{64 * k}-{64 * k + 64}.part?{query}" for k in range(n)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the balancers' connection reuse is exercised
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.disable_nagle_algorithm = isinstance(self.server, _TCPServer)  # no TCP options on Unix sockets
        super().setup()
        backend: EchoBackend = self.server.backend  # type: ignore[attr-defined]
        with backend.lock:
            backend.connections += 1

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        backend: EchoBackend = self.server.backend  # type: ignore[attr-defined]
        if self.path == "/healthz":
            status, body = (200, {"ok": True}) if backend.healthy else (503, {"ok": False})
        elif backend.busy:
            status, body = 503, {"error": "busy", "backend": backend.name}
        else:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            if "sleep" in query:
                time.sleep(float(query["sleep"][0]))
            status, body = 200, {"backend": backend.name, "uri": self.path}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "backend-client"

    def log_message(self, *args: object) -> None:
        pass


class _Tracking:
    """Remembers open connections, so stopping can close keep-alive ones as a dead process would."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, backend: EchoBackend) -> None:
        self.backend = backend
        self.conns: set[socket.socket] = set()
        super().__init__(address, _Handler)  # type: ignore[call-arg]

    def process_request(self, request, client_address) -> None:
        self.conns.add(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request) -> None:
        self.conns.discard(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def handle_error(self, request, client_address) -> None:
        pass  # connections reset by a balancer or by stop(): expected here


class _TCPServer(_Tracking, ThreadingHTTPServer):
    pass


class _UnixServer(_Tracking, socketserver.ThreadingUnixStreamServer):
    pass


class EchoBackend:
    """A node stand-in on 127.0.0.1 (or a Unix socket): answers /healthz (200, or 503 when not
    ``healthy``) and echoes who answered; ``busy`` makes it answer 503 to everything else. Stopping
    closes its keep-alive connections too, as a dead process would; starting again reuses the address."""

    def __init__(self, name: str, unix_dir: Path | None = None) -> None:
        self.name = name
        self.address: int | str = str(unix_dir / f"{name}.sock") if unix_dir else free_port()
        self.healthy, self.busy = True, False
        self.connections = 0
        self.lock = threading.Lock()
        self.server: _Tracking | None = None
        self.start()

    def start(self) -> None:
        if isinstance(self.address, str):
            if os.path.exists(self.address):
                os.unlink(self.address)
            self.server = _UnixServer(self.address, self)
        else:
            self.server = _TCPServer(("127.0.0.1", self.address), self)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.shutdown()
        for conn in list(self.server.conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server.server_close()
        self.server = None


@pytest.fixture
def cluster(request):
    """(balancer, its three backends). lighttpd 1.4.69 tells backends apart by address only, not
    port, so on 127.0.0.1 its backends listen on Unix sockets (short paths: they have a length limit)."""
    kind = request.param
    sockets = Path(tempfile.mkdtemp(prefix="dada-lb-")) if kind == "lighttpd" else None
    backends = [EchoBackend(f"b{k}", sockets) for k in range(3)]
    lb = start_balancer(kind, [b.address for b in backends])
    yield lb, backends
    lb.stop()
    for b in backends:
        b.stop()
    if sockets:
        shutil.rmtree(sockets, ignore_errors=True)


def who(lb: Balancer, uri: str, conn: http.client.HTTPConnection | None = None) -> str:
    """Which backend answered ``uri`` through the balancer (checking the URI arrived unchanged); over
    ``conn`` if given (kept open, as the front's connection pool does), else a new connection."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", lb.port, timeout=30)
    try:
        conn.request("GET", uri)
        r = conn.getresponse()
        data = r.read()
    finally:
        if own:
            conn.close()
    assert r.status == 200, (lb.kind, uri, r.status, data[:300], lb.output()[-2000:])
    body = json.loads(data)
    assert body["uri"] == uri
    if lb.kind in ("haproxy", "nginx"):
        assert r.getheader("X-Dada-Node"), r.getheaders()  # the admin's "which node answered?"
    return body["backend"]


def mapping(lb: Balancer, uris: list[str]) -> dict[str, str]:
    """Who answers each URI, asked one after the other over one kept-open connection (like the front)."""
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=30)
    try:
        return {u: who(lb, u, conn) for u in uris}
    finally:
        conn.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("cluster", ALL, indirect=True)
def test_same_uri_same_node_and_uris_spread(cluster):
    lb, backends = cluster
    uris = block_uris()
    first = mapping(lb, uris)
    assert mapping(lb, uris) == first  # the same job always reaches the same node
    counts = {b.name: list(first.values()).count(b.name) for b in backends}
    assert all(c >= N_URIS // 10 for c in counts.values()), counts  # every node gets a fair share
    # A block goes to one node whatever its parameters (as with the front's own ring): its frames
    # are in that node's page cache.
    other = mapping(lb, block_uris(query="channels=dpc,azimuthal&dpc.rdpc=6"))
    assert list(other.values()) == list(first.values())


@pytest.mark.parametrize("cluster", ALL, indirect=True)
def test_a_hedged_twin_hashes_apart_from_its_job(cluster):
    """The front's hedge of a slow job marks its path (twin_url): the balancers' hash then sends most
    twins to another node than their job's (the rest the bounded load or the next hedge moves)."""
    lb, _ = cluster
    uris = block_uris()
    first, twins = mapping(lb, uris), mapping(lb, [twin_url(u) for u in uris])
    apart = sum(first[u] != twins[twin_url(u)] for u in uris)
    # By chance alone a twin lands on another node than its job with probability 1 - Σ share², the shares
    # being the balancer's own (two thirds for three even ones; lighttpd's are uneven, and vary with the
    # nodes' ports): the bound sits 3 standard deviations below that. A twin hashed with its job: 0.
    n = len(uris)
    chance = 1 - sum((c / n) ** 2 for c in Counter(first.values()).values())
    assert apart >= n * chance - 3 * (n * chance * (1 - chance)) ** 0.5, (apart, n, chance)


@pytest.mark.parametrize("cluster", ALL, indirect=True)
def test_stopped_node_moves_only_its_uris_and_gets_them_back(cluster):
    lb, backends = cluster
    uris = block_uris()
    before = mapping(lb, uris)
    gone = backends[1]
    gone.stop()
    during = mapping(lb, uris)  # every request still answered, by the others
    moved = {u for u in uris if during[u] != before[u]}
    assert moved == {u for u in uris if before[u] == gone.name}, "only the stopped node's URIs move"
    # ~1/N of them; lighttpd's hash gives uneven shares (one of three nodes may hold half).
    assert 0 < len(moved) < N_URIS * (0.75 if lb.kind == "lighttpd" else 0.5)
    gone.start()
    # haproxy: its health check (rise 2); nginx: fail_timeout; lighttpd: disable-time.
    wait_for(lambda: mapping(lb, uris) == before, 15, f"{lb.kind} gives the node its URIs back")


@pytest.mark.parametrize("cluster", ["haproxy"], indirect=True)
def test_health_check_takes_node_out_and_back(cluster):
    lb, backends = cluster
    uris = block_uris()
    before = mapping(lb, uris)
    sick = backends[2]
    sick.healthy = False  # /healthz says 503; the node would still answer jobs
    wait_for(lambda: sick.name not in mapping(lb, uris).values(), 10, "the failing node is taken out")
    after = mapping(lb, uris)
    assert all(after[u] == before[u] for u in uris if before[u] != sick.name)
    sick.healthy = True
    wait_for(lambda: mapping(lb, uris) == before, 10, "the healthy node is put back")


@pytest.mark.parametrize("cluster", ["haproxy", "nginx"], indirect=True)
def test_busy_503_goes_to_another_node(cluster):
    lb, backends = cluster
    uris = block_uris()
    before = mapping(lb, uris)
    busy = backends[0]
    busy.busy = True
    during = mapping(lb, uris)  # retried elsewhere: the front never sees the 503
    assert busy.name not in during.values()
    assert all(during[u] == before[u] for u in uris if before[u] != busy.name)


@pytest.mark.parametrize("cluster", ["haproxy", "nginx"], indirect=True)
def test_keeps_connections_to_nodes_open(cluster):
    lb, backends = cluster
    uri = block_uris()[0]
    home = next(b for b in backends if b.name == who(lb, uri))
    opened = home.connections
    for _ in range(12):  # a new client connection each time
        who(lb, uri)
    assert home.connections - opened <= 2, f"{home.connections - opened} new node connections for 12 requests"


@pytest.mark.parametrize("cluster", ["haproxy", "nginx"], indirect=True)
def test_admin_endpoints_on_loopback(cluster):
    lb, _ = cluster
    if lb.kind == "haproxy":
        metrics = http_get(lb.stats_port, "/metrics")
        assert metrics.status == 200 and b"haproxy_backend_active_servers" in metrics.body
        assert http_get(lb.stats_port, "/stats").status == 200
    else:
        status = http_get(lb.port, "/nginx_status")
        assert status.status == 200 and b"Active connections" in status.body


@pytest.mark.parametrize("cluster", ["haproxy"], indirect=True)
def test_bounded_load_spreads_a_hot_uri(cluster):
    lb, _ = cluster
    uri = block_uris()[0] + "&sleep=0.6"
    with ThreadPoolExecutor(6) as pool:
        answered = set(pool.map(lambda _: who(lb, uri), range(6)))
    assert len(answered) >= 2, "hash-balance-factor lets no node take every concurrent request"


def test_lighttpd_tells_nodes_apart_by_address_only():
    """The caveat in deploy/lighttpd.conf: two nodes on one machine (same address, other port) get
    no share of lighttpd 1.4.69's hash; all jobs go to one of them."""
    backends = [EchoBackend(f"b{k}") for k in range(3)]
    lb = start_balancer("lighttpd", [b.address for b in backends])
    try:
        assert len(set(mapping(lb, block_uris(20)).values())) == 1
    finally:
        lb.stop()
        for b in backends:
            b.stop()
