"""Three nodes in their own network namespaces behind shaped links (tests/netsim.py; root only).

The small version of benchmarks/scale.py: every answer through the simulated network (dadafs server,
per-node dadafs mounts, HAProxy from deploy/, the front) equals one process's; the links carry what the
nodes read; a re-analysis with new parameters reads its raw bytes from each node's own cache; and the
faults of the network (a slow link, a link cut mid-request, a partition, the dadafs server restarted)
change nothing in the answer and never hang a request.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from helpers import Daemon, missing
from netsim import Sim, Snapshot, get, stxm_query, sweep, usable

from dada.cluster.nodes import BALANCED_HEDGE_FLOOR
from dada.demo.sample import Detector
from dada.demo.writer import ScanSpec, write_eiger

N = 3
SCAN = "s/scan"  # 8x16 points of 512x512 uint32, blocks of 8 frames: 16 blocks over 3 nodes
COLD = ("t/scan", "u/scan", "v/scan")  # the same files under other paths: cold in every dadafs cache
FRAMES = 128


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    why = usable()
    if why:
        missing(f"the network simulation cannot run here: {why}")
    folder = tmp_path_factory.mktemp("scale")
    os.makedirs(folder / "s")
    write_eiger(str(folder / "s"), "scan", ScanSpec(8, 16, Detector(512, 512, "uint32"), frames_per_file=1000,
                                                     seed=3, quick=True), progress=lambda m: None)
    for cold in COLD:
        os.makedirs(folder / cold.split("/")[0])
        for f in os.listdir(folder / "s"):
            if f.endswith(".h5"):
                os.link(folder / "s" / f, folder / cold.split("/")[0] / f)
    return str(folder)


@pytest.fixture(scope="module")
def one(root):
    d = Daemon(["node", root, "--threads", "1"])
    yield d
    d.stop()


@pytest.fixture(scope="module")
def sim(root):
    sweep()
    # HAProxy as deploy/haproxy.cfg ships it; links slowed as for 3 nodes sharing 2 cores
    s = Sim(N, root, factor=0.5, front_flags=("--block-frames", "8"))
    s.start()
    yield s
    s.close()


def same(sim: Sim, one: Daemon, k: float, timeout: float = 120, scan: str = SCAN) -> tuple[float, Snapshot]:
    """Ask the cluster for the full scan with parameters ``k``; the answer must equal one process's."""
    url = f"/stxm/{scan}.npy{stxm_query(k)}"
    before = sim.snapshot()
    got = sim.ask(url, timeout)
    cost = sim.snapshot() - before
    want = one.get(url, timeout=timeout)
    assert got.status == want.status == 200, (got.status, got.body[:300])
    assert got.body == want.body
    return cost.wall, cost


def test_answers_links_and_cache_affinity(sim, one):
    _, first = same(sim, one, 1)
    read = sum(first.read)
    assert read > 0 and all(first.read), f"every node reads its blocks through its own mount: {first.read}"
    # the uplink carries every byte the mounts fetched, plus HTTP and TCP; each node link its own node's
    assert first.links.uplink >= sum(first.fetched) >= read * 0.99
    for k in range(N):
        assert first.links.nodes[k] >= first.fetched[k]
    assert abs(sum(first.links.nodes) - first.links.uplink) <= 0.05 * first.links.uplink
    # even shares: the front asks for each block's node by name, at most ceil(16 / 3) = 6 blocks each (HAProxy's
    # own hash of these 16 paths gives one node 10 and another none); blocks are of nearly equal size
    assert max(first.read) < 0.4 * read, first.read
    _, again = same(sim, one, 2)  # new parameters: the same blocks go to the same nodes
    shares = [again.cached_share(k) for k in range(1, N + 1)]
    assert all(s is not None and s >= 0.9 for s in shares), shares
    assert again.links.uplink < 0.2 * first.links.uplink


def test_a_node_leaves_and_comes_back(sim, one):
    same(sim, one, 3)
    sim.procs[f"node{N}"].stop()
    try:
        time.sleep(4)  # HAProxy's checks take it out
        _, away = same(sim, one, 4)
        assert away.read[N - 1] == 0
        moved = sum(away.fetched) / sum(away.read)
        # only its blocks move, to stand-ins: at most 6 of 16
        assert 0 < moved < 0.4, f"about 1/N of the blocks move, not {moved:.2f}"
    finally:
        sim.start_node(N)
    time.sleep(4)
    _, back = same(sim, one, 5)
    assert back.read[N - 1] > 0 and back.cached_share(N) >= 0.9, "its cache survived in its mount"


def test_a_slow_link_on_a_first_pass(sim, one):
    """Node N's link 500x slower while every raw byte crosses the links (a scan cold in the dadafs caches;
    this scan is ~70x smaller than the benchmark's, whose fault is a 50x slower link): its blocks stall,
    give their slots back and are hedged on the nodes that answer at the usual pace, asked for by name
    (HAProxy's use-server), so the request takes about as long as a healthy one."""
    healthy, _ = same(sim, one, 10, scan=COLD[1])
    status = sim.within("head", get_json, sim.front_port)
    sim.shape_node(N, sim.node_gbit / 500)
    try:
        slow, cost = same(sim, one, 11, scan=COLD[2])
    finally:
        sim.shape_node(N, sim.node_gbit)
    after = sim.within("head", get_json, sim.front_port)
    steered = after["steered"] - status["steered"]
    assert steered >= 1, "no twin was asked of a node by name"
    # the slow node could not have read its share in that time: its blocks were computed elsewhere
    assert cost.read[N - 1] < sum(cost.read) / N, cost.read
    # its share alone takes > 15 s; a request pays at most the first stall (BALANCED_HEDGE_FLOOR) before the
    # laggard is known, then shorter ones (LAGGING_HEDGE_FLOOR) for blocks sent to it later
    assert slow < 1.5 * healthy + 2 * BALANCED_HEDGE_FLOOR, (healthy, slow)


def get_json(port: int) -> dict:
    return get("127.0.0.1", port, "/healthz", timeout=10).json()


def test_faults_in_the_network(sim, one):
    # cut silently mid-request from the node's own end, then a partition from the switch's end
    for k, switch in ((7.0, False), (8.0, True)):
        timer = threading.Timer(0.2, sim.link, (N, False, switch))
        timer.start()
        try:
            wall, _ = same(sim, one, k, timeout=90)
        finally:
            timer.join()
            sim.link(N, True, switch)
        assert wall < 60
        time.sleep(4)
    # the head's dadafs server restarted mid-scan, on data the mounts have not read yet
    timer = threading.Timer(0.2, lambda: (sim.procs["fs"].stop(), sim.start_fs()))
    timer.start()
    try:
        same(sim, one, 9, scan=COLD[0])
    finally:
        timer.join()
