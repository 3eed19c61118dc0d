"""The node pool against real HTTP servers on loopback: every job answered once, by its body, with no more
jobs waiting for a slot than the nodes have slots, and nothing sent after a request has failed."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web

from dada.cluster.nodes import Job, NodePool, UserError


class Node:
    """A node stand-in: answers ``/_block/…`` with its own path after a short random wait, 404 for ``bad``."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.running = self.most = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(random.uniform(0, 0.004))
            if "bad" in request.path:
                return web.json_response({"error": "not_found", "message": "no such block"}, status=404)
            return web.Response(body=request.path.encode())
        finally:
            self.running -= 1


async def started(n: int) -> tuple[list[Node], list[web.AppRunner], list[str]]:
    nodes, runners, urls = [], [], []
    for _ in range(n):
        node = Node()
        app = web.Application()
        app.router.add_get("/{tail:.*}", node.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        nodes.append(node)
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    return nodes, runners, urls


def jobs(request: int, n: int, bad: int = -1) -> list[Job]:
    paths = [f"/_block/scan/{64 * i}-{64 * i + 64}{'bad' if i == bad else ''}.part" for i in range(n)]
    return [Job(i, f"{p}?channels=darkfield", p, request) for i, p in enumerate(paths)]


def test_every_job_once_with_at_most_a_slot_each_waiting():
    async def run() -> None:
        nodes, runners, urls = await started(2)
        pool = NodePool(urls, per_node=2)
        await pool.start()
        waiting = []
        real_acquire = pool._acquire

        async def watched(job, tried):
            waiting.append(sum(pool._queued.values()) + 1)  # this job and those already waiting for a slot
            return await real_acquire(job, tried)

        pool._acquire = watched
        try:
            got: dict[int, bytes] = {}
            todo = jobs(pool.request(), 300)
            await pool.fetch_all(todo, lambda job, body: got.__setitem__(job.id, body))
            assert sorted(got) == list(range(300))
            assert all(got[j.id] == j.key.encode() for j in todo)
            assert sorted(p for n in nodes for p in n.seen) == sorted(j.key for j in todo)  # each sent once
            assert max(waiting) <= pool.slots == 4
            assert max(n.most for n in nodes) <= 2
        finally:
            await pool.close()
            for r in runners:
                await r.cleanup()

    asyncio.run(run())


def test_a_job_the_node_refuses_ends_the_request_and_sends_nothing_more():
    async def run() -> None:
        nodes, runners, urls = await started(2)
        pool = NodePool(urls, per_node=2)
        await pool.start()
        try:
            with pytest.raises(UserError) as err:
                await pool.fetch_all(jobs(pool.request(), 200, bad=3), lambda job, body: None)
            assert err.value.status == 404
            await asyncio.sleep(0.05)  # any job still in flight lands
            assert sum(len(n.seen) for n in nodes) < 50  # the jobs after the failure were never sent
        finally:
            await pool.close()
            for r in runners:
                await r.cleanup()

    asyncio.run(run())
