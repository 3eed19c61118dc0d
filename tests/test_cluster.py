"""The cluster as real processes on loopback: nodes, fronts, real load balancers, faults, growing scans.

Every answer of a front is compared byte for byte with the single-process answer of a node (which
computes in-process), so gluing partial results must be exact, including sums over points
(``reduce=sum``), the whole-scan median reference and png percentile clipping.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import threading
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from balancers import start_balancer
from helpers import Daemon, free_port, http_get, require_module

SCANS = ("eiger/u16/scan_0001", "eiger/u32/scan_0002")
ROUTES = (
    "darkfield/{scan}.npy?rmin=8",
    "darkfield/{scan}.png?rmin=8&output=transmission",
    "dpc/{scan}.npy",
    "dpc/{scan}.npy?reference=median&rotation=30&flip=true",
    "dpc/{scan}.png?reference=median&component=angle",
    "azimuthal/{scan}.npy?rmin=6&nsectors=12",
    "azimuthal/{scan}.png?rmin=6",
    "radial/{scan}.npy?nbins=24",
    "radial/{scan}.npy?reduce=sum&nbins=24",
    "radial/{scan}.png?reduce=sum",
    "radial/{scan}.tiff?unit=q",
    "stxm/{scan}.h5?darkfield.rmin=8&dpc.reference=median",
    "stxm/{scan}.png?output=azimuthal.anisotropy&plow=5&phigh=95",
    "darkfield/{scan}.npy?vert=1:5&horz=2:7",
    "dpc/{scan}.json?vert=1:5:2&horz=1:7:3&reference=median",
    "maxpixel/{scan}.npy?rmin=4&rmax=20",
    "contrast/{scan}.npy?rmin=6",
    "stxm/{scan}.h5?channels=dpc,maxpixel,contrast,radial&maxpixel.rmin=2&contrast.rmax=14&output=dpc.dpc",
)
CASES = [r.format(scan=s) for s in SCANS for r in ROUTES] + [
    "dpc/live/scan_0003.npy", "darkfield/live/scan_0003.png",
    # the routes the front answers itself: the same code as a single process
    "frame/eiger/u16/scan_0001/5.npy", "sum/eiger/u32/scan_0002.npy?vert=1:3", "composite/eiger/u16/scan_0001.png",
    "tomo/slice/tomo/nxtomo_0001/4.npy", "tomo/center/tomo/tdf_0001.json", "meta/eiger/u16/scan_0001.json",
]


def start_nodes(root: str, n: int, env: dict[str, str] | None = None) -> list[Daemon]:
    return [Daemon(["node", root, "--threads", "1"], env=env) for _ in range(n)]


def urls(nodes: list[Daemon]) -> str:
    return ",".join(d.base for d in nodes)


def front(root: str, tmp_path, *flags: str) -> Daemon:
    return Daemon(["serve", root, "--block-frames", "8", "--cache-dir", str(tmp_path / f"cache-{time.monotonic_ns()}"),
                   *flags])


def jobs_done(f: Daemon) -> int:
    return sum(n["done"] for n in f.get("/healthz").json()["nodes"])


@pytest.fixture(scope="module")
def nodes(demo_root):
    ds = start_nodes(demo_root, 4)
    yield ds
    for d in ds:
        d.stop()


@pytest.fixture(scope="module")
def reference(nodes):
    """The single-process answers: a node computes public routes in-process."""
    return {case: nodes[0].get("/" + case) for case in CASES}


def check_same(f: Daemon, reference: dict) -> None:
    for case, want in reference.items():
        got = f.get("/" + case)
        assert got.status == want.status == 200, (case, got.body[:300])
        assert got.body == want.body, case


def test_front_over_a_node_list_matches_one_process_byte_for_byte(demo_root, nodes, reference, tmp_path):
    f = front(demo_root, tmp_path, "--nodes", urls(nodes))
    try:
        check_same(f, reference)
        used = [n["done"] for n in f.get("/healthz").json()["nodes"]]
        assert sum(x > 0 for x in used) >= 3, used  # the blocks were spread over the nodes
        check_same(f, reference)  # again, from the result and block caches
    finally:
        f.stop()


def test_a_lone_block_is_computed_in_pieces_and_cached_whole(demo_root, nodes, reference, tmp_path):
    """48 frames in one 64-frame block and 4 nodes: the block goes out as 4 pieces of 12 frames, one per
    node, and comes back glued exactly; the cache then holds the whole block."""
    f = Daemon(["serve", demo_root, "--nodes", urls(nodes), "--block-frames", "64", "--cache-dir", str(tmp_path / "c")])
    try:
        first = "stxm/eiger/u32/scan_0002.h5?darkfield.rmin=8&radial.nbins=24"
        again = "darkfield/eiger/u32/scan_0002.npy?rmin=8"
        got = f.get("/" + first)
        assert got.status == 200 and got.body == nodes[0].get("/" + first).body  # the node computes in-process
        used = [n["done"] for n in f.get("/healthz").json()["nodes"]]
        assert sorted(used) == [1, 1, 1, 1], used  # one block, four pieces: every node took one
        got = f.get("/" + again)  # darkfield's moments of the whole block, from the cache
        assert got.status == 200 and got.body == reference[again].body
        assert jobs_done(f) == 4
    finally:
        f.stop()


@pytest.mark.parametrize("kind", ["haproxy", "nginx", "lighttpd"])
def test_front_through_a_real_load_balancer_matches_one_process(kind, demo_root, nodes, reference, tmp_path):
    lb = start_balancer(kind, [d.port for d in nodes])
    f = front(demo_root, tmp_path, "--lb", lb.url)
    try:
        check_same(f, reference)
    finally:
        f.stop()
        lb.stop()


def test_embedded_default_starts_local_nodes_and_matches(demo_root, reference, tmp_path):
    f = front(demo_root, tmp_path)  # no --nodes, no --lb
    try:
        health = f.get("/healthz").json()
        assert health["role"] == "front" and len(health["nodes"]) == (os.cpu_count() or 1)
        check_same(f, reference)
    finally:
        f.stop()


def test_block_urls_are_readable_and_stable(nodes):
    r = nodes[0].get("/_block/eiger/u16/scan_0001/8-16.part?channels=darkfield&darkfield.rmin=8")
    assert r.status == 200
    r2 = nodes[1].get("/_block/eiger/u16/scan_0001/8-16.part?channels=darkfield&darkfield.rmin=8")
    assert r.body == r2.body
    assert nodes[0].get("/_block/eiger/u16/scan_0001/16-8.part?channels=darkfield").status == 400
    assert nodes[0].get("/_block/eiger/u16/scan_0001/x.part").status == 404
    assert nodes[0].get("/_block/../../etc/passwd/0-8.part").status == 404


def test_a_node_killed_mid_request_changes_nothing(demo_root, reference, tmp_path):
    slow = start_nodes(demo_root, 3, env={"DADA_TEST_JOB_DELAY": "0.5"})
    f = front(demo_root, tmp_path, "--nodes", urls(slow))
    case = "stxm/eiger/u32/scan_0002.h5?darkfield.rmin=8&dpc.reference=median"
    try:
        killer = threading.Timer(0.3, slow[1].proc.kill)
        killer.start()
        got = f.get("/" + case)
        killer.join()
        assert slow[1].proc.poll() is not None
        assert got.status == 200, got.body[:300]
        assert got.body == reference[case].body
        down = [n for n in f.get("/healthz").json()["nodes"] if n["url"] == slow[1].base][0]
        assert down["failures"] >= 1
    finally:
        f.stop()
        for d in slow:
            d.stop()


def test_a_node_that_keeps_failing_is_taken_out_and_probed_back(demo_root, nodes, reference, tmp_path):
    flaky = Daemon(["node", demo_root, "--threads", "1"])
    f = front(demo_root, tmp_path, "--nodes", urls([nodes[0], flaky]))

    def state() -> dict:
        return next(n for n in f.get("/healthz").json()["nodes"] if n["url"] == flaky.base)

    try:
        flaky.proc.kill()
        flaky.proc.wait()
        for k in range(4):  # every answer complete and right while the node is away
            case = f"/darkfield/eiger/u16/scan_0001.npy?rmin={8 + k}"
            assert f.get(case).body == nodes[0].get(case).body
            if not state()["up"]:
                break
        assert not state()["up"]
        flaky = Daemon(["node", demo_root, "--threads", "1"], port=flaky.port)  # back on the same address
        deadline = time.monotonic() + 10
        while not state()["up"]:
            assert time.monotonic() < deadline, "the node was not probed back"
            time.sleep(0.2)
        before = state()["done"]
        case = "/darkfield/eiger/u32/scan_0002.npy?rmin=11"
        assert f.get(case).body == nodes[0].get(case).body
        assert state()["done"] > before  # it takes jobs again
    finally:
        f.stop()
        flaky.stop()


def answered_in(f: Daemon, reference: dict, case: str = "darkfield/eiger/u16/scan_0001.npy?rmin=8") -> float:
    """Seconds the front took for ``case``, whose answer must be one process's."""
    t0 = time.monotonic()
    got = f.get("/" + case)
    elapsed = time.monotonic() - t0
    assert got.status == 200 and got.body == reference[case].body
    return elapsed


def test_a_slow_node_is_hedged(demo_root, nodes, reference, tmp_path):
    laggard = Daemon(["node", demo_root, "--threads", "1"], env={"DADA_TEST_JOB_DELAY": "20"})
    f = front(demo_root, tmp_path, "--nodes", urls([*nodes[:2], laggard]))
    try:
        elapsed = answered_in(f, reference)
        assert elapsed < 8, f"{elapsed:.1f} s: the slow node's blocks were not hedged"
    finally:
        f.stop()
        laggard.stop()


@pytest.mark.parametrize("bounded", [True, False], ids=["as-shipped", "without-bounded-load"])
def test_a_slow_node_is_hedged_through_haproxy(demo_root, nodes, reference, tmp_path, bounded):
    """Behind a balancer the twin of a slow job is asked of a node that answers at the usual pace, by the
    name HAProxy gives it in X-Dada-Node (X-Dada-Server, use-server), so it never lands on the laggard
    again; with HAProxy's bounded load (as shipped) and without it (every block on its own node)."""
    laggard = Daemon(["node", demo_root, "--threads", "1"], env={"DADA_TEST_JOB_DELAY": "20"})
    lb = start_balancer("haproxy", [nodes[0].port, nodes[1].port, laggard.port],
                        edit=None if bounded else lambda c: re.sub(r"^\s*hash-balance-factor .*\n", "", c, flags=re.M))
    f = front(demo_root, tmp_path, "--lb", lb.url, "--lb-concurrency", "6")
    try:
        assert bounded == ("hash-balance-factor" in lb.config.read_text())
        elapsed = answered_in(f, reference)
        assert elapsed < 10, f"{elapsed:.1f} s: the slow node's blocks were not hedged elsewhere"
        status = f.get("/healthz").json()
        assert status["hedges"] >= 1 and status["steered"] >= 1, status
    finally:
        f.stop()
        lb.stop()
        laggard.stop()


def test_all_nodes_down_is_a_quick_clear_502(demo_root, tmp_path):
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    f = front(demo_root, tmp_path, "--nodes", ",".join(dead))
    try:
        t0 = time.monotonic()
        r = f.get("/darkfield/eiger/u16/scan_0001.npy")
        assert time.monotonic() - t0 < 10
        assert r.status == 502 and r.content_type == "application/json"
        body = r.json()
        assert body["error"] == "nodes_failed" and body["jobs"] and set(body["nodes"]) <= set(dead)
        assert f.get("/healthz").status == 200  # the front itself is fine
    finally:
        f.stop()


def read_events(port: int, rid: str, out: list) -> None:
    r = http_get(port, f"/progress/{rid}", timeout=60)
    for chunk in r.body.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))


def test_progress_reports_every_block_once_and_ends_with_the_total(demo_root, nodes, tmp_path):
    f = front(demo_root, tmp_path, "--nodes", urls(nodes))
    try:
        events: list = []
        t = threading.Thread(target=read_events, args=(f.port, "prog-1", events))
        t.start()
        time.sleep(0.3)
        r = f.get("/darkfield/eiger/u32/scan_0002.npy?rmin=9", headers={"X-Request-Id": "prog-1"})
        t.join(30)
        assert r.status == 200 and r.headers["x-request-id"] == "prog-1"
        progress = [e for k, e in events if k == "progress"]
        assert events[-1][0] == "end" and events[-1][1]["status"] == 200
        total = progress[0]["total"]
        assert total == 6 and events[-1][1]["done"] == total
        cells = [c for e in progress[1:] for c in e["cells"]]
        assert sorted(cells) == list(range(48))  # every point of the map exactly once
        assert [e["done"] for e in progress[1:]] == list(range(1, total + 1))
        import io

        import numpy as np

        want = np.load(io.BytesIO(r.body)).ravel()
        got = np.full(48, np.nan)
        for e in progress[1:]:
            got[e["cells"]] = e["values"]
        assert np.array_equal(got, want)  # the values painted as they arrive are the final map's
        other = f.get("/darkfield/eiger/u32/scan_0002.npy?rmin=9")
        assert len(other.headers["x-request-id"]) == 32  # one is made when the client gives none
    finally:
        f.stop()


def test_growing_scan_caches_only_complete_blocks(demo_root, tmp_path):
    """Data files land one by one; a request computes only blocks that are new or were incomplete."""
    root = tmp_path / "root"
    src, live = os.path.join(demo_root, "eiger/u16"), root / "run"
    live.mkdir(parents=True)
    shutil.copy2(os.path.join(src, "scan_0001_master.h5"), live)
    shutil.copy2(os.path.join(src, "scan_0001_data_000001.h5"), live)  # frames 0..19 of 48
    one = Daemon(["node", str(root), "--threads", "1"])
    f = Daemon(["serve", str(root), "--nodes", one.base, "--block-frames", "8", "--cache-dir", str(tmp_path / "c")])
    case = "/darkfield/run/scan_0001.npy?rmin=8"
    try:
        assert f.get(case).body == one.get(case).body
        assert jobs_done(f) == 6  # blocks 0..5: only 0 and 1 are complete
        shutil.copy2(os.path.join(src, "scan_0001_data_000002.h5"), live)  # frames 20..39
        assert f.get(case).body == one.get(case).body
        assert jobs_done(f) == 6 + 4  # 0 and 1 from the cache; 2 (was incomplete), 3, 4 new, 5 still open
        assert f.get(case).body == one.get(case).body
        assert jobs_done(f) == 6 + 4 + 1  # only the open block again
        shutil.copy2(os.path.join(src, "scan_0001_data_000003.h5"), live)
        whole = f.get(case)
        assert whole.body == one.get(case).body and whole.headers["cache-control"].startswith("public")
        assert jobs_done(f) == 6 + 4 + 1 + 1
    finally:
        f.stop()
        one.stop()


def test_changed_data_and_corrupt_cache_entries_give_fresh_correct_answers(demo_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(os.path.join(demo_root, "eiger/u32"), root / "s")
    one = Daemon(["node", str(root), "--threads", "1"])
    cache = tmp_path / "cache"
    case = "/darkfield/s/scan_0002.npy?rmin=8"
    f = Daemon(["serve", str(root), "--nodes", one.base, "--block-frames", "8", "--cache-dir", str(cache)])
    try:
        first = f.get(case)
        assert first.body == one.get(case).body
        f.stop()
        for dirpath, _, files in os.walk(cache):  # flip a byte in every disk entry
            for name in files:
                with open(os.path.join(dirpath, name), "r+b") as fh:
                    fh.seek(-1, os.SEEK_END)
                    last = fh.read(1)
                    fh.seek(-1, os.SEEK_END)
                    fh.write(bytes([last[0] ^ 0xFF]))
        f = Daemon(["serve", str(root), "--nodes", one.base, "--block-frames", "8", "--cache-dir", str(cache)])
        assert f.get(case).body == first.body  # corrupt entries are dropped and recomputed, never served
        assert jobs_done(f) == 6
        # new content in one data file (a new mtime too): a new answer, equal to the node's fresh one
        with h5py.File(root / "s" / "scan_0002_data_000002.h5", "r+") as h:
            frames = h["entry/data/data"]
            frames[3] = frames[3] // 2
        time.sleep(0.2)  # past the front's recheck interval (recheck_seconds, 0.05 s)
        changed = f.get(case)
        assert changed.status == 200 and changed.body != first.body and changed.body == one.get(case).body
    finally:
        f.stop()
        one.stop()


def metric(d: Daemon, name: str, **labels: str) -> float:
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in d.get("/metrics").body.decode().splitlines():
        head, _, value = line.rpartition(" ")
        if head.startswith(name + "{") and set(head[len(name) + 1:-1].split(",")) == want:
            return float(value)
    return 0.0


@pytest.fixture
def aerospike_server():
    """The wire-protocol test server as its own process (killed, whatever the test did)."""
    require_module("aerospike", "pip install -e '.[cluster]'")
    import test_cache

    server = test_cache.ServerProcess(free_port())
    server.start()
    yield server
    if server.proc.poll() is None:
        server.kill()


def test_fronts_share_results_through_aerospike_and_survive_its_outage(demo_root, nodes, reference, aerospike_server):
    server = aerospike_server
    spec = f"127.0.0.1:{server.port}"
    flags = ("--nodes", urls(nodes), "--block-frames", "8", "--cache-dir", "none", "--aerospike", spec)
    case = "stxm/eiger/u16/scan_0001.h5?darkfield.rmin=8&dpc.reference=median"
    a = Daemon(["serve", demo_root, *flags])
    try:
        assert a.get("/" + case).body == reference[case].body
        assert metric(a, "dada_cache", level="aerospike", counter="puts") > 0
    finally:
        a.stop()
    b = Daemon(["serve", demo_root, *flags])  # another front: nothing in its memory, no disk cache
    try:
        assert b.get("/" + case).body == reference[case].body
        assert jobs_done(b) == 0  # every block and the result came from Aerospike
        server.kill()
        for k in range(3):  # Aerospike down: requests still succeed, computed, and it is counted
            q = f"/darkfield/eiger/u32/scan_0002.npy?rmin={8 + k}"
            t0 = time.monotonic()
            assert b.get(q).body == nodes[0].get(q).body
            assert time.monotonic() - t0 < 5
        assert metric(b, "dada_cache", level="aerospike", counter="errors") + \
            metric(b, "dada_cache", level="aerospike", counter="skipped") > 0
        server.start()  # back on the same port: the cache reconnects by itself
        puts = metric(b, "dada_cache", level="aerospike", counter="puts")
        deadline = time.monotonic() + 15
        for k in itertools.count():
            q = f"/darkfield/eiger/u16/scan_0001.npy?rmin={20 + k}"
            assert b.get(q).body == nodes[0].get(q).body
            if metric(b, "dada_cache", level="aerospike", counter="puts") > puts:
                break
            assert time.monotonic() < deadline, "the front did not reconnect to Aerospike"
            time.sleep(0.3)
    finally:
        b.stop()



def test_a_saturated_node_pushes_back_and_the_front_honours_it(demo_root, tmp_path):
    one = Daemon(["node", demo_root, "--threads", "1"], env={"DADA_TEST_JOB_DELAY": "0.4"})
    try:
        results: list = []
        url = "/_block/eiger/u16/scan_0001/0-8.part?channels=darkfield"
        threads = [threading.Thread(target=lambda: results.append(one.get(url))) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        busy = [r for r in results if r.status == 503]
        assert busy and all(r.headers.get("retry-after") and r.json()["error"] == "busy" for r in busy)
        assert any(r.status == 200 for r in results)
        # two fronts on the one node: more jobs than it admits; both still answer completely
        fronts = [front(demo_root, tmp_path, "--nodes", one.base) for _ in range(2)]
        try:
            answers: list = []
            case = "/darkfield/eiger/u32/scan_0002.npy?rmin=5"
            ts = [threading.Thread(target=lambda f=f: answers.append(f.get(case))) for f in fronts]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert [a.status for a in answers] == [200, 200]
            assert answers[0].body == answers[1].body == one.get(case).body
        finally:
            for f in fronts:
                f.stop()
    finally:
        one.stop()


def answers(url: str) -> bool:
    try:
        return http_get(int(url.rsplit(":", 1)[1]), "/healthz", timeout=2).status in (200, 403)
    except OSError:
        return False


def test_the_embedded_default_restarts_a_local_node_that_dies(demo_root, reference, tmp_path):
    """SIGKILL a local node: it is reaped and started again on its port, counted in /healthz and /metrics,
    and answers stay exactly those of one process."""
    f = front(demo_root, tmp_path)
    try:
        before = f.get("/healthz").json()["local_nodes"]
        victim = before[0]
        os.kill(victim["pid"], 9)
        deadline = time.monotonic() + 60
        while True:
            health = f.get("/healthz").json()
            now = next(n for n in health["local_nodes"] if n["url"] == victim["url"])
            up = next(n for n in health["nodes"] if n["url"] == victim["url"])
            if now["pid"] != victim["pid"] and now["running"] and up["up"] and answers(victim["url"]):
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.2)
        assert health["restarts"] == 1
        assert not os.path.exists(f"/proc/{victim['pid']}")  # reaped: a zombie would still be listed
        assert "dada_local_node_restarts 1.0" in f.get("/metrics").body.decode()
        check_same(f, {k: v for k, v in reference.items() if k.startswith(("stxm/", "darkfield/"))})
        assert jobs_done(f) > 0
    finally:
        f.stop()


def test_sum_and_composite_are_computed_by_the_nodes(demo_root, nodes, tmp_path):
    """/sum and /composite go to the nodes block by block (their parts: images summed, tiles placed) and
    equal one process's answers byte for byte, which in turn equal h5py-read frames summed by numpy."""
    f = front(demo_root, tmp_path, "--nodes", urls(nodes))
    cases = ["sum/eiger/u32/scan_0002.npy", "sum/eiger/u16/scan_0001.npy?reduce=mean&bin=2&vert=1:5&horz=0:7:2",
             "sum/eiger/u16/scan_0001.npy?mask=false&vert=2",
             "composite/eiger/u16/scan_0001.npy?bin=4&vert=1:4&horz=2:7",
             "composite/eiger/u32/scan_0002.tiff?bin=8&horz=1:3"]
    try:
        for case in cases:
            before = jobs_done(f)
            got, want = f.get("/" + case), nodes[0].get("/" + case)
            assert got.status == want.status == 200, (case, got.body[:300])
            assert got.body == want.body, case
            assert jobs_done(f) > before, case  # the nodes computed it, not the front
        scan = "eiger/u16/scan_0001"
        master = os.path.join(demo_root, scan + "_master.h5")
        with h5py.File(master) as h:
            total = sum(h["entry/data"][k][:].astype(np.int64).sum(axis=0) for k in sorted(h["entry/data"]))
        got = np.load(io.BytesIO(f.get(f"/sum/{scan}.npy?mask=false").body))
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, total)
    finally:
        f.stop()
