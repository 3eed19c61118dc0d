"""Progress of running requests as server-sent events: ``GET /progress/{request-id}``.

A request whose client names it (``X-Request-Id``) publishes events (blocks done and total, each
block's map cells and values) from worker threads; every listener gets them all from the start,
then live, then an ``end`` event. A listener may connect before its request starts (the GUI picks
the request id itself). ``DELETE /progress/{request-id}`` cancels the request: the front sends no
more blocks and the request ends with a 409. Finished streams are kept a minute for late
listeners. Requests nobody named publish nothing, so hot cached answers cost no bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dada.errors import Forbidden, NotFound
from dada.server.access import Access, Grant

KEEP_SECONDS = 60.0
WAIT_FOR_START = 30.0


@dataclass
class _Stream:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: float | None = None
    cancelled: bool = False  # read from worker threads: a plain flag, set once
    owner: str | None = None  # with access control: the token name that first used this request id


class _Publisher:
    """A request's side of its stream: thread-safe events out, the listener's cancel in."""

    def __init__(self, hub: ProgressHub, rid: str, stream: _Stream) -> None:
        self.loop, self.hub, self.rid, self.stream = asyncio.get_running_loop(), hub, rid, stream

    def __call__(self, event: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.hub._add, self.rid, "progress", event)

    def cancelled(self) -> bool:
        return self.stream.cancelled


class ProgressHub:
    def __init__(self, access: Access) -> None:
        self.access = access
        self._streams: dict[str, _Stream] = {}
        self._ended: OrderedDict[str, float] = OrderedDict()  # finished streams, oldest first

    def _stream(self, rid: str) -> _Stream:
        self._expire()
        if rid not in self._streams:
            self._streams[rid] = _Stream()
        return self._streams[rid]

    def _expire(self) -> None:
        now = time.monotonic()
        while self._ended and now - next(iter(self._ended.values())) > KEEP_SECONDS:
            rid, _ = self._ended.popitem(last=False)
            self._streams.pop(rid, None)

    def _add(self, rid: str, kind: str, event: dict[str, Any]) -> None:
        s = self._stream(rid)
        if s.ended is not None:
            return
        s.events.append((kind, event))
        if kind == "end":
            s.ended = time.monotonic()
            self._ended[rid] = s.ended
        s.changed.set()
        s.changed = asyncio.Event()

    def _owned(self, rid: str, grant: Grant | None) -> _Stream:
        """The stream of a request id, claimed by the first token that uses it; 403 for any other token
        (a stream carries map values: it is as private as the answer)."""
        s = self._stream(rid)
        if grant is not None:
            if s.owner is None:
                s.owner = grant.name
            elif s.owner != grant.name:
                raise Forbidden("this request id belongs to another token")
        return s

    def publisher(self, rid: str, grant: Grant | None = None) -> _Publisher:
        """What the request's computation reports progress to (from any thread) and asks about cancels."""
        return _Publisher(self, rid, self._owned(rid, grant))

    async def cancel(self, request: web.Request) -> web.Response:
        """``DELETE /progress/{rid}``: ask a running request to stop."""
        rid = request.match_info["rid"]
        grant = self.access.grant(request)
        s = self._streams.get(rid)
        if s is None or s.ended is not None:
            raise NotFound(f"no running request {rid!r}")
        self._owned(rid, grant)
        s.cancelled = True
        return web.json_response({"request": rid, "cancelled": True}, status=202)

    def end(self, rid: str, status: int, error: dict[str, Any] | None = None) -> None:
        s = self._stream(rid)
        last = next((e for k, e in reversed(s.events) if k == "progress"), {})
        self._add(rid, "end", {"status": status, "done": last.get("done", 0), "total": last.get("total", 0),
                               **({"error": error} if error else {})})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        rid = request.match_info["rid"]
        s = self._owned(rid, self.access.grant(request))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        sent = 0
        deadline = time.monotonic() + WAIT_FOR_START
        while True:
            while sent < len(s.events):
                kind, event = s.events[sent]
                sent += 1
                await resp.write(f"event: {kind}\ndata: {json.dumps(event)}\n\n".encode())
                if kind == "end":
                    return resp
            if not s.events and time.monotonic() > deadline:
                await resp.write(b'event: end\ndata: {"status": 404, "error": "no such request"}\n\n')
                return resp
            try:
                await asyncio.wait_for(s.changed.wait(), timeout=15)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
