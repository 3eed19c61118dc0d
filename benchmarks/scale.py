"""A cluster of N nodes on one machine (network namespaces, tbf-shaped links) and the model for a real one.

    sudo python benchmarks/scale.py [--dir DIR] [--nodes 1,2,4,8,16] [--repeats 3] [--faults 4] [--pairs 5]
                                    [--balance-factor N|0] [--no-leave]

For each N: N ``dada node --threads 1`` processes, each in its own network namespace with its own dadafs
mount of the head's ``dadafs serve``; the front dispatches through HAProxy configured from
deploy/haproxy.cfg without its bounded load (tests/netsim.py builds it all and removes it however the run
ends). The machine has
few cores, shared by the N nodes and the head, so every link is slowed by the nodes' CPU share: the
*time factor* f = min(1, cores / (N + 1)) (the head counted as one more process), node links at
1 Gbit/s x f and the head's uplink at 20 Gbit/s x f. Frames/s divided by f is the cluster's speed on
unshared cores ("scaled").

Per N, on a scan of Eiger 4M frames (2070x2167 uint32, bitshuffle-LZ4), full-scan ``/stxm`` with all
four channels, repeated on fresh hard-linked copies of the scan (so each first pass finds cold dadafs
caches; pixel maps are built before timing): the *first pass* (every byte over the links), then the
*re-analysis* (the same copy, new parameters: raw bytes from the nodes' own dadafs caches). Printed:
frames/s, front CPU per point, CPU seconds per frame of every role, bytes per node link and on the
uplink, the share of raw bytes each node's own cache served, and the limit that binds. Then a node
leaves and comes back (how much of the cache survives), then faults in the network at ``--faults``
nodes. Every answer is compared byte for byte with one ``dada node`` process answering ``/stxm`` itself.

Last, the model: the CPU seconds per frame of each role and the bytes per frame, measured above, give the
frames/s of a cluster of any size; its prediction for this machine is printed against every measured
point, then its prediction for 24 nodes of 4 cores (1 GbE each, 2x10 GbE uplink) and 10^6 frames.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from common import eiger_file  # noqa: E402
from helpers import Daemon  # noqa: E402
from netsim import GBIT, Sim, Snapshot, stxm_query, sweep, usable  # noqa: E402

NAME, ROWS, COLS = "eiger4m", 2070, 2167
CORES = os.cpu_count() or 1
HEAD_ROLES = ("front", "haproxy", "fs")
_queries = iter(range(1, 10**6))


def factor(n: int) -> float:
    """The nodes' CPU share on this machine: the time factor every link is slowed by."""
    return min(1.0, CORES / (n + 1))


def copies(folder: str, count: int) -> list[str]:
    """Hard-linked copies of the scan in folders c0, c1, ...: other paths, so every copy is cold in dadafs."""
    out = []
    for j in range(count):
        d = os.path.join(folder, f"c{j}")
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(folder):
            if f.startswith(NAME) and f.endswith(".h5") and not os.path.exists(os.path.join(d, f)):
                os.link(os.path.join(folder, f), os.path.join(d, f))
        out.append(f"c{j}/{NAME}")
    return out


def cache_bytes(folder: str, n: int) -> int:
    """A mount's RAM cache: twice its node's share of the scan (the hash gives some nodes more than 1/N)."""
    scan = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.startswith(NAME))
    return max(64 << 20, 2 * scan // n)


class Reference:
    """One process (``dada node --threads 2``) answering /stxm itself: the answer every cluster answer must equal.
    ``frames``: the scan's."""

    def __init__(self, folder: str, frames: int) -> None:
        self.frames = frames
        self.daemon = Daemon(["node", folder, "--threads", "2"])
        self.answers: dict[str, bytes] = {}

    def check(self, query: str, body: bytes, what: str) -> None:
        if query not in self.answers:
            r = self.daemon.get(f"/stxm/c0/{NAME}.npy{query}", timeout=900)
            assert r.status == 200, (r.status, r.body[:300])
            self.answers[query] = r.body
        if body != self.answers[query]:
            raise RuntimeError(f"{what}: the cluster's answer differs from one process's")


@dataclass
class Pass:
    kind: str
    cost: Snapshot
    frames: int
    twins: int = 0  # hedged twins the front sent during the pass

    @property
    def fps(self) -> float:
        return self.frames / self.cost.wall

    def per_frame(self, role: str) -> float:
        """CPU seconds per frame of a role (nodes, mounts: all of them together)."""
        if role in ("node", "mount", "fs"):
            return sum(v for k, v in self.cost.cpu.items() if k.startswith(role)) / self.frames
        return self.cost.cpu.get(role, 0.0) / self.frames

    def shares(self) -> list[float]:
        return [s for k in range(1, len(self.cost.read) + 1) if (s := self.cost.cached_share(k)) is not None]


@dataclass
class Row:
    n: int
    f: float
    first: list[Pass] = field(default_factory=list)
    again: list[Pass] = field(default_factory=list)


def ask(sim: Sim, ref: Reference, scan: str, query: str, what: str, timeout: float = 600) -> Pass:
    sent = twins(sim)[0]
    before = sim.snapshot()
    r = sim.ask(f"/stxm/{scan}.npy{query}", timeout)
    cost = sim.snapshot() - before
    if r.status != 200:
        raise RuntimeError(f"{what}: {r.status} {r.body[:300]!r}")
    ref.check(query, r.body, what)
    return Pass(what, cost, ref.frames, twins(sim)[0] - sent)


def utilisation(p: Pass, sim: Sim) -> dict[str, float]:
    """How busy each possible limit was during a pass (1 = saturated)."""
    c, wall = p.cost, p.cost.wall
    node_rate, up_rate = sim.node_gbit * GBIT * sim.factor / 8, sim.uplink_gbit * GBIT * sim.factor / 8
    return {
        "machine CPU (the time factor)": sum(c.cpu.values()) / (wall * CORES),
        "node CPU": max(v for k, v in c.cpu.items() if k.startswith("node")) / (wall * min(1.0, sim.factor * 1.0)),
        "node link": max(c.links.nodes) / (wall * node_rate),  # both directions: nearly all of it is towards the node
        "head uplink": c.links.uplink / (wall * up_rate),
        "front CPU": c.cpu.get("front", 0.0) / wall,
        "dadafs server": max(v for k, v in c.cpu.items() if k.startswith("fs")) / wall,
    }


def binding(p: Pass, sim: Sim) -> str:
    u = utilisation(p, sim)
    top = max(u, key=u.get)
    if u[top] < 0.8:  # nothing saturated: each node thread waits for its reads, then computes
        return f"reads and compute in series (busiest: {top}, {100 * u[top]:.0f} %)"
    return f"{top} ({100 * u[top]:.0f} %)"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def run_n(n: int, folder: str, scans: list[str], ref: Reference, repeats: int, leave: bool, **sim: object) -> Row:
    f = factor(n)
    row = Row(n, f)
    qa, qb = stxm_query(next(_queries)), stxm_query(next(_queries))
    with Sim(n, folder, factor=f, mount_cache=cache_bytes(folder, n), **sim) as sim:
        ask(sim, ref, scans[0], qa, "warm-up")  # every node's pixel maps for both parameter sets
        ask(sim, ref, scans[0], qb, "warm-up")
        for r in range(repeats):
            scan = scans[1 + r]
            row.first.append(ask(sim, ref, scan, qa, f"N={n} first pass"))
            row.again.append(ask(sim, ref, scan, qb, f"N={n} re-analysis"))
        print(f"\n### N = {n}: time factor {f:.3f} (node links {f:.3f} Gbit/s, uplink {20 * f:.2f} Gbit/s; "
              f"load average {os.getloadavg()[0]:.1f})\n")
        print("| pass | s | frames/s | scaled (÷f) | front µs/pt | node CPU ms/frame | uplink MB | node link MB "
              "(min–max) | nodes read MB | from own cache (min–max) | twins | cores got | binds |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for p in [x for pair in zip(row.first, row.again, strict=True) for x in pair]:
            links = p.cost.links.nodes
            sh = p.shares()
            print(f"| {p.kind.split(' ', 1)[1]} | {p.cost.wall:.2f} | {p.fps:.0f} | "
                  f"{p.fps / f:.0f} | {1e6 * p.per_frame('front'):.0f} | {1e3 * p.per_frame('node'):.2f} | "
                  f"{p.cost.links.uplink / 1e6:.1f} | {min(links) / 1e6:.1f}–{max(links) / 1e6:.1f} | "
                  f"{sum(p.cost.read) / 1e6:.1f} | "
                  f"{pct(min(sh))}–{pct(max(sh))} | {p.twins} | {cores(p):.2f} | {binding(p, sim)} |", flush=True)
        if sim.servers > 1:
            for p in row.first:
                fs = {k: v for k, v in sorted(p.cost.cpu.items()) if k.startswith("fs")}
                each = ", ".join(f"{k} {v:.2f}" for k, v in fs.items())
                print(f"\n{p.kind}: {sim.servers} dadafs servers, CPU s {each}; together "
                      f"{1e3 * sum(fs.values()) / p.frames:.2f} ms per frame fetched")
        if leave and n >= 2:
            leave_and_return(sim, ref, scans[1 + repeats - 1], n)
    return row


def leave_and_return(sim: Sim, ref: Reference, scan: str, n: int) -> None:
    """Node N's process stops (its mount, and so its cache, stays), a scan is asked, then it comes back."""
    sim.procs[f"node{n}"].stop()
    time.sleep(5)  # HAProxy's health check takes it out (2 failures, 2 s apart)
    away = ask(sim, ref, scan, stxm_query(next(_queries)), f"N={n} node {n} away")
    sim.start_node(n)
    time.sleep(5)  # and back in (2 successes)
    back = ask(sim, ref, scan, stxm_query(next(_queries)), f"N={n} node {n} back")
    others = [k for k in range(1, n) if away.cost.read[k - 1]]
    read = sum(away.cost.read[k - 1] for k in others)
    fetched = sum(away.cost.fetched[k - 1] for k in others)
    print(f"\nNode {n} of {n} leaves: the others read {read / 1e6:.1f} MB, of which {fetched / 1e6:.1f} MB "
          f"({pct(fetched / max(read, 1))}; 1/N = {pct(1 / n)}) were blocks new to them, fetched over the uplink "
          f"({away.cost.links.uplink / 1e6:.1f} MB); {pct(1 - fetched / max(read, 1))} came from their own caches. "
          f"Back: node {n} served {pct(back.cost.cached_share(n) or 0)} of its raw bytes from its cache (kept by "
          f"its mount while it was away); every node {pct(min(back.shares()))}–{pct(max(back.shares()))}; "
          f"uplink {back.cost.links.uplink / 1e6:.1f} MB.", flush=True)


def faults(folder: str, scans: list[str], ref: Reference, n: int, **sim: object) -> None:
    """Each fault on a cold copy with new parameters, against the same kind of request just before, healthy."""
    f = factor(n)
    print(f"\n## Faults at N = {n} (time factor {f:.3f}; load average {os.getloadavg()[0]:.1f}); each answer "
          "compared with one process's\n")
    print("| fault | healthy s | with the fault s | ratio | twins (asked by name) | answer |")
    print("|---|---:|---:|---:|---:|---|")
    with Sim(n, folder, factor=f, mount_cache=cache_bytes(folder, n), **sim) as sim:
        left = iter(scans)
        ask(sim, ref, next(left), stxm_query(next(_queries)), "warm-up")
        k = n  # the node the faults hit

        def pair(what: str, fault, heal, during: float = 0.3) -> None:
            healthy = ask(sim, ref, next(left), stxm_query(next(_queries)), f"{what}: healthy")
            timer = threading.Timer(during * healthy.cost.wall, fault)
            before = twins(sim)
            timer.start()
            try:
                hit = ask(sim, ref, next(left), stxm_query(next(_queries)), f"{what}: with the fault", timeout=300)
            finally:
                timer.cancel()
                timer.join()
                heal()
            sent, named = (a - b for a, b in zip(twins(sim), before, strict=True))
            ratio = hit.cost.wall / healthy.cost.wall
            print(f"| {what} | {healthy.cost.wall:.2f} | {hit.cost.wall:.2f} | {ratio:.2f} | {sent} ({named}) | "
                  "identical |", flush=True)

        pair(f"node {k}'s link 50x slower (tbf)", lambda: sim.shape_node(k, sim.node_gbit / 50),
             lambda: sim.shape_node(k, sim.node_gbit), during=0.0)
        pair(f"node {k}'s link cut mid-request (its own end down)", lambda: sim.link(k, False),
             lambda: (sim.link(k, True), time.sleep(5)))

        rejoined = threading.Event()

        def partition() -> None:
            sim.link(k, False, from_switch=True)
            threading.Timer(30, lambda: (sim.link(k, True, from_switch=True), rejoined.set())).start()

        pair(f"node {k} partitioned 30 s (switch port down), then rejoined", partition,
             lambda: (rejoined.wait(60), time.sleep(5)))
        after = ask(sim, ref, next(left), stxm_query(next(_queries)), "after the partition")
        print(f"| (after it rejoined: node {k} carried {after.cost.links.nodes[k - 1] / 1e6:.1f} MB) | | "
              f"{after.cost.wall:.2f} | | | identical |")

        def restart() -> None:
            sim.procs["fs"].stop()
            sim.start_fs()

        pair("the head's dadafs server restarted mid-scan", restart, lambda: None)


def scaling(folder: str, scans: list[str], ref: Reference, pairs: int, big: int, **sim: object) -> None:
    """N = 1 and N = ``big`` side by side, their passes interleaved (the order alternating), so that both see
    the same shared machine; each pair's ratio of scaled frames/s, and the median."""
    print(f"\n## Scaling, interleaved: N = 1 and N = {big} side by side, {pairs} pairs (load average "
          f"{os.getloadavg()[0]:.1f} at the start)\n")
    print(f"| pair | pass | N = 1 frames/s | cores got | N = {big} frames/s | scaled (÷f) | cores got | ratio |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, list[float]] = {"first": [], "re-analysis": []}
    with (Sim(1, folder, factor=factor(1), mount_cache=cache_bytes(folder, 1), **sim) as one,
          Sim(big, folder, factor=factor(big), mount_cache=cache_bytes(folder, big), **sim) as many):
        qa, qb = stxm_query(next(_queries)), stxm_query(next(_queries))
        for s in (one, many):
            ask(s, ref, scans[0], qa, "warm-up")
            ask(s, ref, scans[0], qb, "warm-up")
        for i in range(pairs):
            got: dict[int, tuple[Pass, Pass]] = {}
            for s in ((one, many) if i % 2 == 0 else (many, one)):
                first = ask(s, ref, scans[1 + i], qa, f"N={s.n} first pass")
                got[s.n] = first, ask(s, ref, scans[1 + i], qb, f"N={s.n} re-analysis")
            for j, kind in enumerate(ratios):
                a, b = got[1][j], got[big][j]
                ratios[kind].append(b.fps / factor(big) / (a.fps / factor(1)))
                print(f"| {i + 1} | {kind} | {a.fps:.0f} | {cores(a):.2f} | {b.fps:.0f} | {b.fps / factor(big):.0f} | "
                      f"{cores(b):.2f} | {ratios[kind][-1]:.2f} |", flush=True)
    for kind, rs in ratios.items():
        print(f"\nScaling, {kind}: N = {big} is {statistics.median(rs):.2f}x N = 1 under the time factor (median of "
              f"{len(rs)} interleaved pairs: {' '.join(f'{r:.2f}' for r in rs)}; goal ≥ 6x)")
    print(f"(load average {os.getloadavg()[0]:.1f} at the end)")


def cores(p: Pass) -> float:
    """The cores our processes got during a pass: their CPU seconds over the wall time."""
    return sum(p.cost.cpu.values()) / p.cost.wall


def twins(sim: Sim) -> tuple[int, int]:
    """Hedged twins the front has sent so far, and how many of them it asked of a node by name."""
    status = sim.ask("/healthz", 10).json()
    return status["hedges"], status["steered"]


# -- the model ---------------------------------------------------------------------------------------


def share(r: Row) -> float:
    """The share of raw bytes a re-analysis read from the nodes' own caches (the least of its nodes; median)."""
    return statistics.median(min(p.shares()) for p in r.again)


@dataclass
class Costs:
    """What a frame costs each role, and what it moves, measured on the simulation (medians over N and repeats)."""

    node: float  # CPU s per frame: dada node (decode + the four channels)
    mount: float  # CPU s per frame: the node's dadafs mount
    front: float
    haproxy: float
    fs: float  # dadafs server, per frame fetched
    read: float  # raw (compressed) bytes a node reads per frame
    uplink: float  # bytes over the uplink per frame, first pass (fragments, HTTP, TCP included)
    share: float  # raw bytes from the nodes' own caches on a re-analysis (median over N of each N's median)

    @classmethod
    def of(cls, rows: list[Row]) -> Costs:
        first = [p for r in rows for p in r.first]
        again = [p for r in rows for p in r.again]

        def med(ps: list[Pass], fn) -> float:
            return statistics.median(fn(p) for p in ps)

        return cls(med(again, lambda p: p.per_frame("node")), med(again, lambda p: p.per_frame("mount")),
                   med(first + again, lambda p: p.per_frame("front")),
                   med(first + again, lambda p: p.per_frame("haproxy")),
                   med(first, lambda p: p.per_frame("fs")),
                   med(first, lambda p: sum(p.cost.read) / p.frames),
                   med(first, lambda p: p.cost.links.uplink / p.frames),
                   statistics.median(share(r) for r in rows))


def model(c: Costs, nodes: int, threads: int, share: float, node_bps: float, uplink_bps: float,
          head_cores: float | None, cached: bool, machine: float = CORES) -> tuple[float, str]:
    """(frames/s, the binding limit) of a cluster of ``nodes`` nodes computing on ``threads`` threads, each with
    ``share`` of a core (on this machine the time factor; 1 on a real node), ``head_cores`` for each of front,
    HAProxy and dadafs server (None: they share ``machine`` cores with the nodes, as in the simulation).

    A node thread reads a block, then computes it: its frame costs the node's and the mount's CPU, plus, for
    bytes not in its cache, the link's time and the dadafs server's (both in series with the thread)."""
    miss = (1 - c.share) if cached else 1.0
    moved, fs = c.uplink * miss, c.fs * miss  # per frame: bytes over the links, dadafs server CPU
    cpu = c.node + c.mount
    limits = {
        "node CPU": nodes * threads * share / cpu,
        "node read + compute in series": nodes * threads / (cpu / share + moved * 8 / node_bps + fs / share),
        "node link": nodes * node_bps / 8 / moved if moved else float("inf"),
        "head uplink": uplink_bps / 8 / moved if moved else float("inf"),
    }
    if head_cores is None:  # everything on this machine's cores
        limits["machine CPU"] = machine / (cpu + c.front + c.haproxy + fs)
    else:
        limits |= {"front CPU": head_cores / c.front, "dadafs server CPU": head_cores / fs if fs else float("inf"),
                   "HAProxy CPU": head_cores / c.haproxy if c.haproxy else float("inf")}
    top = min(limits, key=limits.get)
    return limits[top], top


def report_model(c: Costs, rows: list[Row]) -> None:
    print("\n## The model\n")
    print(f"Measured per frame (Eiger 4M, medians): node {1e3 * c.node:.2f} ms CPU ({1 / c.node:.0f} frames/s per "
          f"core), its mount {1e3 * c.mount:.2f} ms, front {1e6 * c.front:.0f} µs, HAProxy {1e6 * c.haproxy:.0f} µs, "
          f"dadafs server {1e3 * c.fs:.2f} ms per frame fetched; a node reads {c.read / 1e6:.3f} MB, the uplink "
          f"carries {c.uplink / 1e6:.3f} MB per frame on a first pass ({c.uplink / c.read:.2f}x); re-analysis: "
          f"{pct(c.share)} of raw bytes from the nodes' own caches (median over N).\n")
    print(f"The model on this machine's {CORES} cores, and on the cores our processes got (the machine is shared: "
          "CPU seconds of all our processes over the wall time):\n")
    print(f"| N | f | pass | measured frames/s (median) | model ({CORES} cores) | measured / model | model's limit | "
          "cores got | model on them | measured / model |")
    print("|---:|---:|---|---:|---:|---:|---|---:|---:|---:|")

    def flag(x: float) -> str:
        return f"{x:.2f}" + ("" if abs(x - 1) <= 0.15 else " (outside ±15 %)")

    for r in rows:
        for kind, ps, cached in (("first", r.first, False), ("re-analysis", r.again, True)):
            fps = statistics.median(p.fps for p in ps)
            got = statistics.median(cores(p) for p in ps)
            mine = replace(c, share=share(r))  # each N with the cache share it measured
            pred, limit = model(mine, r.n, 1, r.f, GBIT * r.f, 20 * GBIT * r.f, None, cached)
            on, _ = model(mine, r.n, 1, r.f, GBIT * r.f, 20 * GBIT * r.f, None, cached, got)
            print(f"| {r.n} | {r.f:.3f} | {kind} | {fps:.0f} | {pred:.0f} | {flag(fps / pred)} | {limit} | {got:.2f} | "
                  f"{on:.0f} | {flag(fps / on)} |")
    one = next((r for r in rows if r.n == 1), None)
    eight = next((r for r in rows if r.n == 8), None)
    if one and eight:
        for kind in ("first", "again"):
            s1 = statistics.median(p.fps for p in getattr(one, kind)) / one.f
            s8 = statistics.median(p.fps for p in getattr(eight, kind)) / eight.f
            print(f"\nScaling under the time factor, {'first pass' if kind == 'first' else 're-analysis'}: "
                  f"N = 8 is {s8 / s1:.2f}x N = 1 (goal ≥ 6x).")
    print("\n24 nodes of 4 cores, 1 GbE each, 2x10 GbE uplink, head: one core each for front, HAProxy, dadafs "
          "server; 10^6 Eiger 4M frames:\n")
    print("| nodes | first pass frames/s | limit | time | re-analysis frames/s | limit | time |")
    print("|---:|---:|---|---:|---:|---|---:|")
    for n in (1, 2, 4, 8, 12, 16, 20, 24, 32, 48, 64):
        a, la = model(c, n, 4, 1.0, GBIT, 20 * GBIT, 1.0, False)
        b, lb = model(c, n, 4, 1.0, GBIT, 20 * GBIT, 1.0, True)
        print(f"| {n} | {a:.0f} | {la} | {1e6 / a:.0f} s | {b:.0f} | {lb} | {1e6 / b:.0f} s |")
    link = 20 * GBIT / 8 / c.uplink
    compute = 24 * 4 / (c.node + c.mount)
    print(f"\nBounds for 24 nodes: the uplink alone {1e6 / link:.0f} s for a first pass ({link:.0f} frames/s), "
          f"compute alone {1e6 / compute:.0f} s for a re-analysis ({compute:.0f} frames/s). At those rates the head "
          f"needs {link * c.fs:.1f} cores of dadafs server, {link * c.front:.1f} of front and {link * c.haproxy:.1f} "
          f"of HAProxy (first pass); {compute * c.front:.1f} of front and {compute * c.haproxy:.1f} of HAProxy "
          f"(re-analysis); each node {1e6 * c.read / 24 / 1e9:.1f} GB of dadafs cache for its share of 10^6 frames.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", help="where the scan goes (kept and reused); default: a temporary folder")
    p.add_argument("--nodes", default="1,2,4,8,16")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--faults", type=int, default=4, help="nodes for the fault runs (0: none)")
    p.add_argument("--balance-factor", type=int, default=None,
                   help="HAProxy's bounded load with this hash-balance-factor (default none: the shipped one is "
                        "removed, as deploy/README.md says for cache affinity)")
    p.add_argument("--no-leave", action="store_true", help="skip the node leaving and coming back")
    p.add_argument("--pairs", type=int, default=5,
                   help="interleaved pairs of N = 1 and N = 8 for the scaling figure (0: none)")
    p.add_argument("--scan", default="32x64", help="points of the scan, VxH (default 32x64: 2048 frames)")
    p.add_argument("--block-frames", type=int, help="the front's --block-frames (default: the data's grid)")
    p.add_argument("--fragment", type=int, default=256 << 10, help="dadafs fragment size (default 256 KiB)")
    p.add_argument("--fs-servers", type=int, default=1,
                   help="dadafs server processes on the head, the nodes' mounts spread over them (default 1)")
    args = p.parse_args()
    vert, horz = (int(x) for x in args.scan.split("x"))
    sim = {"balance_factor": args.balance_factor, "fragment": args.fragment, "servers": args.fs_servers,
           "front_flags": ("--block-frames", str(args.block_frames)) if args.block_frames else ()}
    why = usable()
    if why:
        sys.exit(f"scale.py: {why}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally blocks and atexit clean up
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    if stale := sweep():
        print(f"(removed what an earlier run left: {', '.join(stale)})")
    folder = args.dir or tempfile.mkdtemp(prefix="dada-bench-scale-")
    os.makedirs(folder, exist_ok=True)
    eiger_file(folder, NAME, vert, horz, ROWS, COLS, "uint32")
    ns = [int(x) for x in args.nodes.split(",")]
    scans = copies(folder, 1 + max(args.repeats + 12, args.pairs))
    print(f"{vert * horz} Eiger 4M frames ({ROWS}x{COLS} uint32); {CORES} cores; HAProxy from deploy/haproxy.cfg"
          + (f" plus hash-balance-factor {args.balance_factor}" if args.balance_factor else "")
          + f"; blocks of {args.block_frames or 'the data grid (32)'} frames; dadafs fragments of "
          f"{args.fragment // 1024} KiB; front and nodes without result caches")
    t0 = time.perf_counter()
    ref = Reference(folder, vert * horz)
    try:
        print(f"(load average {os.getloadavg()[0]:.1f} at the start)")
        rows = [run_n(n, folder, scans, ref, args.repeats, not args.no_leave, **sim) for n in ns]
        report_model(Costs.of(rows), rows)
        if args.pairs:
            scaling(folder, scans, ref, args.pairs, 8, **sim)
        if args.faults:
            faults(folder, scans[1 + args.repeats:], ref, args.faults, **sim)
    finally:
        ref.daemon.stop()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
