"""``dadafs serve``: a read-only HTTP view of a directory tree, with an SSD fragment cache.

    GET /stat/{path}    attributes of one path (JSON)
    GET /list/{path}    every entry of a folder with its attributes, in one round trip
    GET /data/{path}    file bytes; Range (one range), If-Range; ETag from size, mtime and inode;
                        409 if the file changed while being read (the answer is cut if it changes later)
    GET /healthz        {"status": "ok", "fragment_size": …}
    GET /metrics        Prometheus metrics

Nothing outside the served folder is reachable, symlinks included. Given a shared secret or allowed
networks, it answers everything but ``/healthz`` only for requests carrying ``X-Dadafs-Secret`` or
coming from those networks; others get 403.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from dada.confine import resolve
from dada.errors import Forbidden
from dada.nodeguard import NodeGuard
from dadafs import FRAGMENT_SIZE, SECRET_HEADER
from dadafs.fragments import FragmentStore, Piece, SourceChanged, identity

log = logging.getLogger("dadafs.server")
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def etag_of(st: os.stat_result) -> str:
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"'


def attrs(st: os.stat_result) -> dict[str, Any]:
    return {
        "type": "dir" if stat.S_ISDIR(st.st_mode) else "file",
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "mode": stat.S_IMODE(st.st_mode),
        "nlink": st.st_nlink,
        "uid": st.st_uid,
        "gid": st.st_gid,
        "blocks": st.st_blocks,
        "ino": st.st_ino,
        "etag": etag_of(st),
    }


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


class Served:
    def __init__(self, root: str, store: FragmentStore) -> None:
        self.root = os.path.realpath(root)
        self.store = store
        self.registry = CollectorRegistry()
        self.requests = Counter("dadafs_requests", "Requests", ["kind", "status"], registry=self.registry)
        self.bytes_out = Counter("dadafs_bytes_served", "File bytes sent", registry=self.registry)
        self.fragments = Counter("dadafs_fragment_requests", "Fragments asked for", ["result"],
                                 registry=self.registry)
        self.cache_bytes = Gauge("dadafs_cache_bytes", "Bytes in the SSD fragment cache", registry=self.registry)
        self.pool = ThreadPoolExecutor(16, thread_name_prefix="dadafs-io")

    def locate(self, tail: str) -> tuple[str, os.stat_result] | None:
        real = resolve(self.root, tail)
        if real is None:
            return None
        try:
            st = os.stat(real)
        except OSError:
            return None
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return None
        return real, st

    async def stat(self, request: web.Request) -> web.Response:
        found = self.locate(request.match_info.get("tail", ""))
        self.requests.labels("stat", "200" if found else "404").inc()
        if found is None:
            return error(404, "no such file or folder")
        return web.json_response(attrs(found[1]))

    async def list(self, request: web.Request) -> web.Response:
        found = self.locate(request.match_info.get("tail", ""))
        if found is None or not stat.S_ISDIR(found[1].st_mode):
            self.requests.labels("list", "404").inc()
            return error(404, "no such folder")
        entries = await asyncio.get_running_loop().run_in_executor(self.pool, self._entries, found[0])
        self.requests.labels("list", "200").inc()
        return web.json_response({"entries": entries})

    def _entries(self, folder: str) -> list[dict[str, Any]]:
        out = []
        with os.scandir(folder) as it:
            for e in it:
                real = resolve(self.root, os.path.relpath(e.path, self.root))
                if real is None:
                    continue  # a symlink pointing out: not part of the tree
                try:
                    st = os.stat(real)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                    out.append({"name": e.name, **attrs(st)})
        return sorted(out, key=lambda a: a["name"])

    async def data(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        found = self.locate(tail)
        if found is None or not stat.S_ISREG(found[1].st_mode):
            self.requests.labels("data", "404").inc()
            return error(404, "no such file")
        real, st = found
        tag = etag_of(st)
        size = st.st_size
        headers = {"ETag": tag, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        start, stop = 0, size
        status = 200
        spec = request.headers.get("Range")
        if spec and request.headers.get("If-Range", tag) == tag:
            parsed = parse_range(spec, size)
            if parsed is None:
                self.requests.labels("data", "416").inc()
                return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
            start, stop = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        if request.method == "HEAD":
            return web.Response(status=status, headers={**headers, "Content-Length": str(stop - start)})
        loop = asyncio.get_running_loop()
        f = self.store.fragment_size
        indices = range(start // f, -(-stop // f))
        # fragments are read one ahead of the one being sent: a whole-file GET never holds more than two
        ahead = [loop.run_in_executor(self.pool, self._piece, real, tail, st, i) for i in indices[:1]]
        try:
            if ahead:
                await ahead[0]
        except SourceChanged:  # the file changed before we could answer: the client must ask again
            self.requests.labels("data", "409").inc()
            return error(409, "the file changed while being read")
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = stop - start
        try:
            await response.prepare(request)
            for k, index in enumerate(indices):
                piece = await ahead.pop()
                if k + 1 < len(indices):
                    ahead.append(loop.run_in_executor(self.pool, self._piece, real, tail, st, indices[k + 1]))
                try:
                    await self._send(request, response, piece, max(start - index * f, 0),
                                     min(stop - index * f, piece.size), st)
                finally:
                    piece.close()
            await response.write_eof()
        except SourceChanged:  # headers are out: what went out may not be one version, so cut the answer
            log.warning("%s changed while being sent; answer cut short", tail)
            self.requests.labels("data", "cut").inc()
            request.transport.close()
            return response
        finally:
            for fut in ahead:  # read but never sent (the client went away): let its buffer go
                fut.add_done_callback(release)
        self.requests.labels("data", str(status)).inc()
        self.bytes_out.inc(stop - start)
        self.cache_bytes.set(self.store.bytes)
        return response

    async def _send(self, request: web.Request, response: web.StreamResponse, piece: Piece, lo: int, hi: int,
                    st: os.stat_result) -> None:
        """Send bytes [lo, hi) of a piece; SourceChanged if they may not be the version ``st``."""
        if piece.source is None:
            await response.write(piece.memory[lo:hi])
            return
        # just read from the source: its pages are in memory, the kernel sends them
        await asyncio.get_running_loop().sendfile(request.transport, piece.source, piece.offset + lo, hi - lo)
        if identity(os.fstat(piece.source.fileno())) != identity(st):
            raise SourceChanged(piece.source.name)

    def _piece(self, real: str, rel: str, st: os.stat_result, index: int) -> Piece:
        piece, hit = self.store.get(real, rel, st, index)
        self.fragments.labels("hit" if hit else "miss").inc()
        return piece

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "fragment_size": self.store.fragment_size})

    async def metrics(self, _: web.Request) -> web.Response:
        self.cache_bytes.set(self.store.bytes)
        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")


def release(done: asyncio.Future) -> None:
    """Close the piece a finished read produced, if it produced one."""
    if not done.cancelled() and done.exception() is None:
        done.result().close()


def parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` / ``a-`` / ``-n`` range as [start, stop), or None if unsatisfiable or malformed."""
    m = RANGE.match(spec.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    a, b = m.group(1), m.group(2)
    if not a:
        n = int(b)
        if n == 0:
            return None
        return max(size - n, 0), size
    start = int(a)
    stop = size if not b else min(int(b) + 1, size)
    if start >= size or stop <= start:
        return None
    return start, stop


def guarded(guard: NodeGuard, served: Served) -> Middleware:
    """403 for requests with neither the secret nor an allowed address (``/healthz`` stays open): the
    check of dada's nodes, reading dadafs's header."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            guard.check(request.path, request.headers, request.remote)
        except Forbidden:
            served.requests.labels("refused", "403").inc()
            return error(403, f"this dadafs server answers its mounts only: send {SECRET_HEADER} "
                              "(dadafs mount --secret-file) or come from an allowed network")
        return await handler(request)

    return check


def make_app(root: str, cache_dir: str, cache_bytes: int, fragment_size: int = FRAGMENT_SIZE,
             guard: NodeGuard | None = None) -> web.Application:
    """The server; with an enabled ``guard``, only requests it lets in are answered."""
    served = Served(root, FragmentStore(cache_dir, cache_bytes, fragment_size))
    app = web.Application(middlewares=[guarded(guard, served)] if guard is not None and guard.enabled else [])
    app.router.add_get("/stat/{tail:.*}", served.stat)
    app.router.add_get("/stat", served.stat)
    app.router.add_get("/list/{tail:.*}", served.list)
    app.router.add_get("/list", served.list)
    app.router.add_get("/data/{tail:.*}", served.data)
    app.router.add_get("/healthz", served.healthz)
    app.router.add_get("/metrics", served.metrics)
    app["served"] = served
    return app
