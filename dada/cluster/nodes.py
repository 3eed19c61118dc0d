"""Sending jobs (block URLs) to analysis nodes: bounded concurrency, timeouts, retries, hedging, health.

Nodes are a list of URLs (each placed on a consistent-hash ring so the same block goes to the same
node) or one load balancer URL (which does its own hashing). A job that fails is retried on the
next node in ring order; a node that fails ``down_after`` times in a row is taken out and probed
back via ``/healthz``; a 503 is honoured by waiting its Retry-After; near the end of a request the
slowest jobs get a hedged duplicate on another node, and the first answer wins.

Through a balancer the front cannot see where a job waits, so a slow node would hold the front's slots
with the 1/N of the blocks that hash to it. The balancer names the node of every answer (``X-Dada-Node``),
and HAProxy takes a name for a request (``X-Dada-Server``): a node silent while a job runs long is probed
by name, and if it lags, jobs that stall give their slot back and get a twin at once, whatever the stage
of the request. A twin is asked of a node that answers at the usual pace, and its path carries a mark of
its own, so a balancer that ignores the name hashes it elsewhere.

The same names place the blocks (:mod:`dada.cluster.owners`): every job is asked of its block's node by name,
evenly per scan and the same node every time, so a re-analysis reads its raw bytes from that node's own
cache. The front learns the names from a census (unnamed requests to many paths, which the balancer hashes
over every node) and from answers; a named job answered by another node means its node is away (the
balancer hashed it as usual), until a probe by name finds it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import statistics
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import aiohttp

from dada.cluster.owners import Owners
from dada.cluster.ring import Ring
from dada.errors import DadaError, NodesFailed, NodesTimedOut
from dada.nodeguard import NODE_SECRET_HEADER

log = logging.getLogger("dada.cluster")

# Answers of a node that are the request's fault, not the node's: passed on to the user as they are.
USER_ERRORS = (400, 404, 413, 422)


@dataclass(frozen=True)
class Job:
    """A node's unit of work: a block of frames (or a piece of one) as a URL, for one request."""

    id: int
    url: str  # path and query below the node's base URL
    key: str  # what the ring hashes: the block, not its parameters, so a block's data stay on one node
    request: int = 0  # which request it serves: slots are shared fairly between requests
    server: str = ""  # through a balancer: the node asked for by name (its block's node, or a twin's stand-in)


@dataclass
class Node:
    url: str
    load: int = 0  # jobs in flight
    failures: int = 0
    up: bool = True
    done: int = 0


@dataclass
class Server:
    """A node behind the balancer, known by the name the balancer gives it in ``X-Dada-Node``."""

    name: str
    ok: float = 0.0  # when it last answered a job at the usual pace, or a probe in time
    probed: float = 0.0  # when it was last probed
    lags: bool = False  # answered slowly, or a probe found it stuck: jobs are hedged sooner, no twin asks it
    away: bool = False  # a job asked of it by name was answered by another node: its blocks go to stand-ins


class UserError(DadaError):
    """A node's 4xx answer, passed on unchanged."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("message", "error"), **{k: v for k, v in body.items() if k != "message"})
        self.status = status
        self._body = body

    def body(self) -> dict:
        return self._body


@dataclass
class _Attempts:
    errors: list[str] = field(default_factory=list)
    timed_out: bool = False


class NodePool:
    def __init__(self, urls: Sequence[str], *, balancer: bool = False, per_node: int = 2,
                 job_timeout: float = 60.0, down_after: int = 3, hedge_factor: float = 3.0,
                 busy_seconds: float = 30.0, secret: str | None = None) -> None:
        self.balancer = balancer
        self.headers = {NODE_SECRET_HEADER: secret} if secret else {}  # the nodes answer their front only
        self.nodes = {u.rstrip("/"): Node(u.rstrip("/")) for u in urls}
        self.per_node = per_node
        self._freed = asyncio.Condition()
        self._running: Counter[int] = Counter()  # slots held, per request
        self._queued: Counter[int] = Counter()  # jobs waiting for a slot, per request
        self._requests = itertools.count(1)
        self.ring = Ring(list(self.nodes))
        self.job_timeout = job_timeout
        self.down_after = down_after
        self.hedge_factor = hedge_factor
        self.busy_seconds = busy_seconds
        self._session: aiohttp.ClientSession | None = None
        self._probe: asyncio.Task | None = None
        self.durations: deque[float] = deque(maxlen=50)  # the last jobs' times: what is typical
        self.hedges = 0  # duplicates sent for slow jobs
        self.steered = 0  # of them, asked of a node by name (through a balancer)
        self.where: dict[str, tuple[str, float, int]] = {}  # job URL -> node last sent it, when, its slot
        self._slots: dict[int, tuple[Node, int]] = {}  # slots held: id -> (node, request)
        self._slot_ids = itertools.count()
        self.servers: dict[str, Server] = {}  # through a balancer: the nodes it named in its answers
        self._names = Ring([])  # their names on a ring: a steered block goes to the same stand-in each time
        self._stall = BALANCED_HEDGE_FLOOR  # how long a job ran when it was last called stalled
        self._probes: set[asyncio.Task] = set()
        self.owners = Owners()  # through a balancer: the node of every block, by name
        self._census_at = -CENSUS_SECONDS  # when the balancer's nodes were last counted

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None),
                                              connector=aiohttp.TCPConnector(limit=0), headers=self.headers)
        self._probe = asyncio.create_task(self._probe_loop())

    async def close(self) -> None:
        for task in self._probes:
            task.cancel()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._session is not None:
            await self._session.close()

    def request(self) -> int:
        """A new request's number: its jobs share the node slots fairly with other requests'."""
        return next(self._requests)

    def status(self) -> dict:
        return {"hedges": self.hedges, "steered": self.steered, "placed": len(self.owners),
                "servers": {s.name: {"lags": s.lags, "away": s.away} for s in self.servers.values()},
                "nodes": [{"url": n.url, "up": n.up, "load": n.load, "failures": n.failures, "done": n.done}
                          for n in self.nodes.values()]}

    # -- one job ------------------------------------------------------------------------------

    async def _once(self, node: Node, job: Job, slot: int) -> bytes:
        """One try on a node whose slot :meth:`_acquire` took: the body, a _Retry saying why not, or the
        node's UserError. The slot is given back either way."""
        try:
            t0 = time.monotonic()
            named = {SERVER_HEADER: job.server} if job.server else None
            async with self._session.get(node.url + job.url, headers=named,
                                         timeout=aiohttp.ClientTimeout(total=self.job_timeout)) as r:
                body = await r.read()
                if r.status == 200:
                    node.failures, node.done = 0, node.done + 1
                    self.durations.append(time.monotonic() - t0)
                    self._heard(r.headers.get(NODE_HEADER), time.monotonic() - t0, job.server)
                    return body
                if r.status == 503 or (self.balancer and r.status == 502):
                    # busy (the node said so), or through a balancer every node it tried was busy
                    wait = float(r.headers.get("Retry-After") or 0.2) if r.status == 503 else 0.2
                    raise _Retry(f"{node.url} busy ({r.status})", failure=False, wait=min(wait, 1.0))
                if r.status in USER_ERRORS:
                    raise UserError(r.status, _json(body, r.status))
                raise _Retry(f"{node.url} answered {r.status}")
        except TimeoutError:
            raise _Retry(f"{node.url} timed out after {self.job_timeout:g} s", timeout=True) from None
        except aiohttp.ClientError as exc:
            raise _Retry(f"{node.url}: {type(exc).__name__}: {exc}") from None
        finally:
            await self._release(slot)

    async def _release(self, slot: int) -> None:
        """Give a slot back (once: a hedged job's slot may have been given back before it ends)."""
        if slot not in self._slots:
            return
        async with self._freed:
            node, request = self._slots.pop(slot)
            node.load -= 1
            self._running[request] -= 1
            if not self._running[request]:
                del self._running[request]
            self._freed.notify_all()

    async def fetch(self, job: Job, avoid: tuple[str, ...] = ()) -> bytes:
        """The job's answer from some node, trying nodes in ring order; NodesFailed when none can.

        Busy answers are waited out (Retry-After) for up to ``busy_seconds``; failures move the job
        to the next node, at most ``2 x nodes`` times (3 at least)."""
        tried: list[str] = list(avoid)  # nodes that come last in this job's order
        attempts = _Attempts()
        failures, busy_until = 0, time.monotonic() + self.busy_seconds
        while failures < max(3, 2 * len(self.nodes)):
            node = await self._acquire(job, tried)
            if node is None:
                break
            slot = next(self._slot_ids)
            self._slots[slot] = (node, job.request)
            self.where[job.url] = (node.url, time.monotonic(), slot)
            try:
                return await self._once(node, job, slot)
            except _Retry as exc:
                attempts.errors.append(exc.reason)
                attempts.timed_out |= exc.timeout
                if exc.failure:
                    failures += 1
                    tried.append(node.url)
                    self._failed(node)
                elif time.monotonic() + exc.wait > busy_until:
                    break
                await asyncio.sleep(exc.wait)
        kind = NodesTimedOut if attempts.timed_out and not self.balancer else NodesFailed
        raise kind(f"job {job.url} failed on every node tried", jobs=[job.url],
                   nodes=sorted(set(tried)) or sorted(self.nodes), errors=attempts.errors[-6:])

    async def _acquire(self, job: Job, tried: list[str]) -> Node | None:
        """A slot on the first idle node in the job's ring order: its own node when that is idle
        (affinity), else the next idle one, so no node idles while another computes two; only when every
        node is busy, a second slot in the same order. Nodes that failed this job come last; None when
        no node is up. Between requests, a freed slot goes to the waiting request holding the fewest, so
        a small map is not queued behind every block of a large one."""
        order = [self.nodes[n] for n in self.ring.order(job.key)] if not self.balancer else list(self.nodes.values())
        order.sort(key=lambda n: n.url in tried)  # stable: ring order kept within each group
        async with self._freed:
            self._queued[job.request] += 1
            try:
                while True:
                    up = [n for n in order if n.up or self.balancer]
                    if not up:
                        return None
                    free = next((n for n in up if n.load == 0), None) or next(
                        (n for n in up if n.load < self.per_node), None)
                    if free is not None and self._my_turn(job.request):
                        free.load += 1
                        self._running[job.request] += 1
                        return free
                    await self._freed.wait()
            finally:
                self._queued[job.request] -= 1
                if not self._queued[job.request]:
                    del self._queued[job.request]

    def _my_turn(self, request: int) -> bool:
        mine = self._running[request]
        return all(mine <= self._running[r] for r in self._queued if r != request)

    def _failed(self, node: Node) -> None:
        node.failures += 1
        if node.failures >= self.down_after and node.up and not self.balancer:
            node.up = False
            log.warning("node %s taken out after %d failures; probing /healthz", node.url, node.failures)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.balancer:
                await self._probe_balanced()
                continue
            for node in self.nodes.values():
                if node.up:
                    continue
                try:
                    async with self._session.get(node.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            node.up, node.failures = True, 0
                            log.warning("node %s is back", node.url)
                except (TimeoutError, aiohttp.ClientError):
                    pass

    @property
    def width(self) -> int:
        """How many jobs compute at once: one per node up (through a balancer, its slots)."""
        return self.per_node if self.balancer else max(1, sum(n.up for n in self.nodes.values()))

    # -- many jobs ---------------------------------------------------------------------------

    async def fetch_all(self, jobs: Sequence[Job], on_done: Callable[[Job, bytes], None]) -> None:
        """Every job, ``on_done`` for each as it arrives; the slowest ones are hedged.

        At most as many jobs wait for a slot as the nodes have slots (the rest are sent as answers come,
        in order), and answers are taken from a queue: the pool's work per request grows with its jobs,
        never with their square."""
        if self.balancer:
            if not self.servers and time.monotonic() - self._census_at > CENSUS_SECONDS:
                await self._census()
            jobs = self._placed(jobs)
        loop = asyncio.get_running_loop()
        waiting = iter(jobs)
        # task -> (job, when sent, the node it was asked of by name: a twin's stand-in)
        pending: dict[asyncio.Future, tuple[Job, float, str]] = {}
        arrived: deque[asyncio.Future] = deque()
        wake: list[asyncio.Future] = [loop.create_future()]

        def finished(task: asyncio.Future) -> None:
            arrived.append(task)
            if not wake[0].done():
                wake[0].set_result(None)

        def send(job: Job, twin: Job | None = None, avoid: tuple[str, ...] = ()) -> None:
            task = asyncio.ensure_future(self.fetch(twin or job, avoid))
            pending[task] = (job, time.monotonic(), (twin or job).server)
            task.add_done_callback(finished)

        def top_up() -> None:
            for job in itertools.islice(waiting, max(0, self.slots - len(pending))):
                send(job)

        hedged: Counter[int] = Counter()  # twins sent, per job
        answered: set[int] = set()
        top_up()
        try:
            while pending:
                if not arrived:  # wake on the next answer, or now and then to look for jobs to hedge
                    wake[0] = loop.create_future()
                    timer = loop.call_later(0.25, lambda f=wake[0]: f.done() or f.set_result(None))
                    await wake[0]
                    timer.cancel()
                while arrived:
                    task = arrived.popleft()
                    if task not in pending:  # a twin cancelled when its job was answered
                        continue
                    job, _, asked = pending.pop(task)
                    if job.id in answered:
                        continue
                    body = task.result()  # a failure here ends the request: it names the job and nodes
                    answered.add(job.id)
                    if asked != job.server and asked and self.balancer:
                        # a twin won: its node read the whole block, the owner perhaps part of it (cancelled)
                        self.owners.move(job.key, asked)
                    for k in range(hedged[job.id] + 1):
                        self.where.pop(twin_url(job.url, k), None)
                    if hedged[job.id]:  # the hedge's twin is no longer needed
                        for other in [t for t, (p, *_) in pending.items() if p.id == job.id]:
                            other.cancel()
                            pending.pop(other)
                    on_done(job, body)
                top_up()
                await self._hedge(pending, hedged, len(answered), len(jobs), send)
        finally:
            for task in pending:
                task.cancel()

    @property
    def slots(self) -> int:
        """Jobs that may compute at once: a request keeps no more than these waiting for a slot."""
        return self.per_node * (1 if self.balancer else max(1, sum(n.up for n in self.nodes.values())))

    async def _hedge(self, pending: dict, hedged: Counter[int], answered: int, total: int,
                     send: Callable[[Job, Job, tuple[str, ...]], None]) -> None:
        """Duplicate jobs running well past the typical job time, once half are answered, one twin each.
        Through a balancer the twin is steered to a node that answers at the usual pace (:meth:`_steer`)
        under a marked path, the stalled try giving its slot back: a slow node would otherwise hold the
        front's slots with the 1/N of the blocks it is sent; and while a node lags (:meth:`_probe_one`) also
        before half are in, sooner, and up to ``MAX_TWINS`` each (a twin can land on the laggard too)."""
        if len(self.durations) < 2 or (not self.balancer and len(self.nodes) < 2):
            return
        lagging = any(s.lags for s in self.servers.values())
        if 2 * answered < total and not lagging and not self.balancer:  # nothing to hedge or probe yet
            return
        typical = statistics.median(self.durations)
        # Through a balancer a job's time includes its wait in the balancer's queue, which the front
        # cannot see: wait longer before spending a node on a duplicate, unless a node is known to lag.
        if not self.balancer:
            stalled = max(self.hedge_factor * typical, 0.2)
        elif lagging:
            stalled = max(LAGGING_HEDGE_FACTOR * typical, LAGGING_HEDGE_FLOOR)
        else:
            stalled = max(self.hedge_factor * typical, BALANCED_HEDGE_FLOOR)
        self._stall = stalled
        now = time.monotonic()
        early = max(LAGGING_HEDGE_FACTOR * typical, LAGGING_HEDGE_FLOOR)
        for p, *_ in list(pending.values()):
            k = hedged[p.id]
            node, sent, slot = self.where.get(twin_url(p.url, k), ("", now, -1))
            if self.balancer and now - sent > early:  # a busy node answers a probe within a job's time
                self._probe_silent(sent, max(self.hedge_factor * typical, BALANCED_HEDGE_FLOOR))
            if k >= (MAX_TWINS if lagging else 1) or now - sent <= stalled or (2 * answered < total and not lagging):
                continue
            hedged[p.id] += 1
            self.hedges += 1
            twin = p
            if self.balancer:
                # it waits in the balancer's queue or runs on its node, not in ours: held, its slot could keep
                # its own twin waiting when the stalled jobs are the request's last (they are one node's)
                await self._release(slot)
                twin = replace(p, url=twin_url(p.url, k + 1), server=self._steer(p, sent, k))
                self.steered += bool(twin.server)
            send(p, twin, (node,))  # elsewhere

    # -- which node behind the balancer --------------------------------------------------------

    def _placed(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """The jobs, each asked by name of its block's node (:class:`Owners`), in turns: every node's first job,
        then every node's second..., so that the jobs sent first keep every node busy and none waits in the
        balancer's queue while another node idles. As they are when no node is known."""
        placed = self.owners.place([j.key for j in jobs], [n for n, s in self.servers.items() if not s.away])
        if not placed:
            return jobs
        turns: Counter[str] = Counter()
        named = []
        for i, job in enumerate(jobs):
            server = placed[job.key]
            turns[server] += 1
            named.append((turns[server], i, replace(job, server=server)))
        return [job for *_, job in sorted(named)]

    def _learn(self, name: str | None) -> Server | None:
        """The node the balancer named in an answer (nginx: its address; none: unknown)."""
        if not self.balancer or not name:
            return None
        if name not in self.servers:
            self.servers[name] = Server(name)
            self._names = Ring(sorted(self.servers))
        return self.servers[name]

    def _heard(self, name: str | None, took: float, asked: str = "") -> None:
        """A job's answer through the balancer, from the node it names; ``asked``: the node it was asked of."""
        server = self._learn(name)
        if server is None:
            return
        server.lags = took > self._stall
        if not server.lags:
            server.ok = time.monotonic()
        if asked and asked != name and asked in self.servers and not self.servers[asked].away:
            self.servers[asked].away = True
            log.warning("node %s behind the balancer is away: its blocks go to stand-ins", asked)

    async def _census(self) -> None:
        """Learn the balancer's nodes: it hashes ``CENSUS_PATHS`` paths over all of them, and names the node of
        each answer (a 404: no node has such a route)."""
        self._census_at = time.monotonic()
        lb, turns = next(iter(self.nodes)), asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with turns:
                with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                    async with self._session.get(f"{lb}{CENSUS_PREFIX}/{i}",
                                                 timeout=aiohttp.ClientTimeout(total=5)) as r:
                        await r.read()
                        self._learn(r.headers.get(NODE_HEADER))

        await asyncio.gather(*(one(i) for i in range(CENSUS_PATHS)))

    async def _probe_balanced(self) -> None:
        """Now and then a census (a node may have joined); away nodes asked ``/healthz`` by name: one that
        answers itself is back, and its blocks with it."""
        if time.monotonic() - self._census_at > CENSUS_SECONDS:
            await self._census()
        lb = next(iter(self.nodes))
        for server in [s for s in self.servers.values() if s.away]:
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with self._session.get(lb + "/healthz", headers={SERVER_HEADER: server.name},
                                             timeout=aiohttp.ClientTimeout(total=2)) as r:
                    await r.read()
                    if r.status == 200 and r.headers.get(NODE_HEADER) == server.name:
                        server.away = False
                        log.warning("node %s behind the balancer is back", server.name)

    def _probe_silent(self, since: float, within: float) -> None:
        """Probe the nodes silent since a job that now runs long was sent: idle, or holding it?"""
        for server in self.servers.values():
            if server.ok < since and server.probed < since and not server.lags and (
                    time.monotonic() - server.probed > within):  # none of its probes is still out
                server.probed = time.monotonic()
                task = asyncio.ensure_future(self._probe_one(server, within))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)

    async def _probe_one(self, server: Server, within: float) -> None:
        """``/healthz`` asked of the node by name waits in the balancer's queue behind the jobs it holds
        (maxconn): an idle node answers at once, a node stuck on slow jobs not within ``within`` s."""
        lb = next(iter(self.nodes))
        try:
            async with self._session.get(lb + "/healthz", headers={SERVER_HEADER: server.name},
                                         timeout=aiohttp.ClientTimeout(total=within)) as r:
                await r.read()
                if r.status == 200 and r.headers.get(NODE_HEADER) == server.name:
                    server.ok = time.monotonic()
                    return
        except (TimeoutError, aiohttp.ClientError):
            pass
        if server.ok < server.probed:
            server.lags = True
            log.warning("node %s behind the balancer lags: its jobs are hedged elsewhere", server.name)

    def _steer(self, job: Job, since: float, skip: int) -> str:
        """The node to ask for a hedged twin by name: of the nodes that answered a job at the usual pace or a
        probe in time since the stalled try was sent, the job's ``skip``-th in ring order (its earlier twins'
        stand-ins are passed over); "" when none is known, and the marked path's hash decides."""
        keen = [n for n in self._names.order(job.key) if self.servers[n].ok >= since and not self.servers[n].lags]
        return keen[skip % len(keen)] if keen else ""


NODE_HEADER = "X-Dada-Node"  # the balancer's name of the node that answered (deploy/haproxy.cfg, nginx.conf)
SERVER_HEADER = "X-Dada-Server"  # the front asks the balancer for a node by that name (deploy/haproxy.cfg)
CENSUS_PREFIX = "/_census"  # paths no node serves, for the balancer to hash over its nodes
CENSUS_PATHS, CENSUS_SECONDS = 256, 60.0  # a node owning 2 % of the balancer's ring is missed once in 170
TWIN_MARK = "~hedge"
MAX_TWINS = 3  # through a balancer: twins of one job, each under its own mark
BALANCED_HEDGE_FLOOR = 2.0  # s: through a balancer no job is duplicated sooner
LAGGING_HEDGE_FACTOR, LAGGING_HEDGE_FLOOR = 1.5, 0.5  # ... unless a node lags: x typical job time, s


def twin_url(url: str, k: int = 1) -> str:
    """The ``k``-th hedged twin of a job URL (k = 0: the URL itself): ``…/{first}-{stop}.part`` becomes
    ``…/{first}-{stop}~hedge.part``, then ``~hedge2.part`` …, a different path for the balancers to hash
    (the node reads the same frames)."""
    if k == 0:
        return url
    path, q, query = url.partition("?")
    stem, dot, ext = path.rpartition(".")
    return f"{stem}{TWIN_MARK}{k if k > 1 else ''}{dot}{ext}{q}{query}"


class _Retry(Exception):
    def __init__(self, reason: str, failure: bool = True, timeout: bool = False, wait: float = 0.0) -> None:
        super().__init__(reason)
        self.reason, self.failure, self.timeout, self.wait = reason, failure, timeout, wait


def _json(body: bytes, status: int) -> dict:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    return doc if isinstance(doc, dict) else {"error": "http", "status": status, "message": f"a node answered {status}"}
