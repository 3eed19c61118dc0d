"""From a URL to an endpoint call: split the path, pick the format, check limits, answer.

One generic handler serves every endpoint; the endpoint's declarations
decide everything specific. Work runs in a thread pool so the event loop
only parses, waits and streams.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from dada.cache.keys import NamedFile, answer_tag, named_files, result_key
from dada.cache.policy import Hot, HotAnswers, cache_control, hot_key
from dada.cache.writer import CacheWriter
from dada.config import Config
from dada.encoders import CONTENT_TYPES, encode, negotiate, png, stored
from dada.encoders.render import check_render, picture
from dada.endpoint import PLANE_FORMATS, Context, Endpoint, FrameSource, Plan, Result, Target, local_parts
from dada.errors import BadParameter, DadaError, NotFound, TooLarge
from dada.server.access import Access, without_token
from dada.server.budget import Budget
from dada.server.metrics import Metrics
from dada.server.progress import ProgressHub
from dada.sources.catalog import Catalog
from dada.stxm.partials import PartialSource

SOURCE_HEADER = "X-Dada-Source"  # STXM answers: "reduction" (the scan's polar reduction) or "raw" (its frames)

# Text formats take several bytes per number: scale the size estimate before the limit check.
TEXT_EXPANSION = {"json": 12, "csv": 12}


@dataclass(frozen=True)
class Address:
    """The parts of a URL path below an endpoint's prefix."""

    path: str  # scan or folder path below the data root
    item: int | None
    fmt: str | None  # from the extension; None: negotiate by Accept


# What a user means as a format (letters, e.g. .bmp, .PNG) or as a number (-1, 1e3, 1.0): a scan's own
# name may hold dots, but never ends in a lone extension of letters the route cannot serve.
FORMAT_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,4}")
NUMBER_LIKE = re.compile(r"[-+]?[\d.]+(?:[eE][-+]?\d+)?")  # \d: any script's digits, to name them wrong


def split_tail(ep: Endpoint, tail: str) -> Address:
    """``a/b/scan/3.npy`` -> (``a/b/scan``, 3, ``npy``) as the endpoint's declarations say."""
    tail = tail.strip("/")
    fmt = None
    head, dot, ext = tail.rpartition(".")
    if dot and "/" not in ext and (ext in CONTENT_TYPES or (ep.target != "folder" and FORMAT_LIKE.fullmatch(ext))):
        if ext not in ep.formats:
            raise BadParameter("format", f"{ext!r} is not a format of this route", f"one of {', '.join(ep.formats)}")
        fmt, tail = ext, head
    if ep.target == "folder":
        return Address(tail, None, fmt)
    item = None
    if ep.item is not None:
        head, _, last = tail.rpartition("/")
        if head and re.fullmatch(r"[0-9]+", last):
            item, tail = ep.item.parse(last), head
        elif head and NUMBER_LIKE.fullmatch(last):
            raise BadParameter(ep.item.name, f"{last!r} is not a valid {ep.item.name}", ep.item.allowed())
        elif not ep.item_optional:
            raise BadParameter(ep.item.name, "missing at the end of the path", ep.item.allowed())
    if not tail:
        raise NotFound("no scan named in the path")
    return Address(tail, item, fmt)


def _hot_key(request: web.Request) -> str:
    return hot_key(request.path, without_token(request.query).items(), request.headers.get("Accept", ""))


REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_id(request: web.Request) -> tuple[str, bool]:
    """The client's own X-Request-Id when it is a plain token (named: progress is published), else a new one."""
    given = request.headers.get("X-Request-Id", "")
    return (given, True) if REQUEST_ID.fullmatch(given) else (uuid.uuid4().hex, False)


SEND_PIECE = 2**20  # bytes: larger bodies go out a piece at a time


async def _send(request: web.Request, body: bytes | memoryview, headers: dict[str, str]) -> web.StreamResponse:
    """The answer, sent from ``body`` itself: a large body is written a piece at a time, each once the
    socket took the last, since a body handed over whole is copied into the transport's buffer (one more
    copy of the answer in memory, for as long as the client takes to read it)."""
    if len(body) <= SEND_PIECE:
        return web.Response(body=body, headers=headers)
    out = web.StreamResponse(headers=headers)
    out.content_length = len(body)
    await out.prepare(request)
    view = memoryview(body)
    for start in range(0, len(view), SEND_PIECE):
        await out.write(view[start:start + SEND_PIECE])
    await out.write_eof()
    return out


def _encoded(result: Result, fmt: str, args: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body, plus for png what a viewer needs to read it (the GUI's colour bar and click-through):
    the colour scale's values and unit, and which scan rows and columns the image's cells are."""
    if fmt != "png":
        return encode(result, fmt, args), {}
    rgba, lg = picture(result, args)
    view = {"legend": lg, **{k: result.attrs[k] for k in ("vert", "horz") if k in result.attrs}}
    return png.save(rgba), {"X-Dada-View": json.dumps(view, separators=(",", ":"))}


# Requests reading more frames than this run in the heavy lane: their own threads, so a user's frame,
# metadata, listing or cached answer never queues behind someone's full-scan map.
INTERACTIVE_FRAMES = 64


class Dispatcher:
    """Holds what every request needs: catalog, config, metrics and the two lanes of worker threads
    (``pool``: planning and interactive work; ``heavy``: computations reading many frames)."""

    def __init__(self, catalog: Catalog, config: Config, metrics: Metrics, pool: Executor, hub: ProgressHub,
                 cache: CacheWriter | None, access: Access) -> None:
        self.catalog = catalog
        self.access = access
        self.config = config
        self.metrics = metrics
        self.pool = pool
        self.heavy = ThreadPoolExecutor(config.threads, thread_name_prefix="dada-heavy")
        self.hub = hub
        self.cache = cache
        self.partials: PartialSource | None = None  # set when the app starts: local engine or the cluster
        self.frames: FrameSource = local_parts  # frame reductions: here, or the cluster's nodes
        self.hot = HotAnswers(catalog, config.answer_cache_bytes)  # encoded answers of complete scans
        self.budget = Budget(config.work_budget_bytes)

    async def _work(self, fn: Callable[..., Any], *args: Any, lane: Executor | None = None) -> Any:
        return await asyncio.get_running_loop().run_in_executor(lane or self.pool, fn, *args)

    def close(self) -> None:
        self.heavy.shutdown(wait=False, cancel_futures=True)

    def handler(self, ep: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            t0 = time.perf_counter()
            status = 500
            try:
                resp = await self._answer(ep, request)
                status = resp.status
                return resp
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception as exc:
                status = getattr(exc, "status", 500)
                raise
            finally:
                self.metrics.requests.labels(ep.name, str(status)).inc()
                self.metrics.latency.labels(ep.name).observe(time.perf_counter() - t0)

        return handle

    def _hot(self, request: web.Request) -> tuple[memoryview, dict[str, str]] | None:
        """A recent answer to the same URL whose inputs are unchanged (``HotAnswers``), straight from memory:
        its body and headers."""
        hot = self.hot.get(_hot_key(request))
        if hot is None or hot.tag in request.headers.get("If-None-Match", ""):
            return None  # (a matching tag: the full path answers 304)
        encoded = self.hot.encoded(hot.tag)
        if encoded is None:
            return None
        _, body = encoded
        rid, listened = request_id(request)
        if listened:
            self.hub.end(rid, 200)
        return body, {**hot.headers, "X-Request-Id": rid}

    async def _answer(self, ep: Endpoint, request: web.Request) -> web.StreamResponse:
        grant = self.access.grant(request)  # 401 first: before anything about the data is said
        if grant is None:  # open: the hot path comes before any parsing
            hot = self._hot(request) if ep.cache_results else None
            if hot is not None:
                return await _send(request, *hot)
        addr = split_tail(ep, request.match_info.get("tail", ""))
        query = without_token(request.query)
        if ep.target == "folder":
            self.access.check_folder(grant, addr.path)
        else:
            self.access.check(grant, addr.path)
            for p in ep.model.params:
                if p.names_file and query.get(p.name):
                    self.access.check(grant, query[p.name], "file")
            hot = self._hot(request) if grant is not None and ep.cache_results else None
            if hot is not None:
                return await _send(request, *hot)
        args = ep.model.parse(query)
        check_render(args)
        fmt = addr.fmt or negotiate(request.headers.get("Accept"), ep.formats)
        planned = time.monotonic()
        target, plan, named = await self._work(self._plan, ep, addr, args)
        self._check(ep, plan, fmt)
        tag = answer_tag(ep, target, args, named, fmt)
        complete = target.complete
        headers = {
            "ETag": tag,
            "Cache-Control": cache_control(complete, ep.target == "folder", grant is not None),
            "Content-Type": CONTENT_TYPES[fmt],
            "Vary": "Accept",
        }
        if ep.target == "folder":  # a listing changes with no scan to name it: never "not modified"
            del headers["ETag"]
        elif tag in request.headers.get("If-None-Match", ""):
            self.metrics.not_modified.inc()
            return web.Response(status=304, headers={k: headers[k] for k in ("ETag", "Cache-Control")})
        rid, listened = request_id(request)
        headers["X-Request-Id"] = rid
        if target.name is not None:
            stem = target.name.replace("/", "_")
            item = "" if target.item is None else f"_{target.item}"
            headers["Content-Disposition"] = f'inline; filename="{ep.name}_{stem}{item}.{fmt}"'
        keep = ep.cache_results and complete
        encoded = self.hot.encoded(tag) if keep else None
        if encoded is not None:  # a hot answer, already encoded
            if listened:
                self.hub.end(rid, 200)
            more, body = encoded
            headers.update(more)
            if target.scan is not None:
                self.hot.arm(_hot_key(request), Hot(addr.path, target.scan, named, tag, headers, planned))
            return await _send(request, body, headers)
        if request.method == "HEAD":  # what the answer would be, from the plan: nothing is computed
            head = web.StreamResponse(headers=headers)
            await head.prepare(request)
            return head
        ctx = Context(self.catalog, self.partials, self.hub.publisher(rid, grant) if listened else None, self.frames,
                      getattr(self.partials, "reduction", None) and self.partials)
        self.metrics.in_flight.inc()
        status, error = 200, None
        try:
            lane = self.heavy if plan.frames > INTERACTIVE_FRAMES else self.pool
            async with self.budget.reserve(plan.work_bytes):
                result = await self._work(self._compute, ep, target, args, named, ctx, lane=lane)
                if result.document is not None and ep.target == "folder":
                    result = replace(result, document=Access.visible(grant, result.document))
                body, more = await self._work(_encoded, ep.present(result, args), fmt, args, lane=lane)
                if result.source is not None:  # which data answered: kept with the answer's other headers
                    more = {**more, SOURCE_HEADER: result.source}
                del result  # its arrays are the body's now (or the cache's): not held while the body is sent
            headers.update(more)
        except DadaError as exc:
            status, error = exc.status, exc.body()
            raise
        finally:
            self.metrics.in_flight.dec()
            if listened:
                self.hub.end(rid, status, error)
        self.metrics.frames.inc(plan.frames)
        self.metrics.bytes_out.labels(ep.name).inc(len(body))
        if keep and target.scan is not None:
            self.hot.keep(_hot_key(request), Hot(addr.path, target.scan, named, tag, headers, planned), more, body)
        return await _send(request, body, headers)

    def _plan(self, ep: Endpoint, addr: Address, args: dict[str, Any]
              ) -> tuple[Target, Plan, tuple[NamedFile, ...]]:
        """What the URL names, the files its parameters name and what the answer will be, in one trip to a
        worker thread."""
        target = ep.resolve(self.catalog, addr.path, addr.item)
        named = named_files(ep, self.catalog, args) if ep.target != "folder" else ()
        return target, ep.plan(target, args, self.catalog), named

    def _compute(self, ep: Endpoint, target: Target, args: dict[str, Any], named: tuple[NamedFile, ...],
                 ctx: Context) -> Result:
        """Computed arrays from the result cache, or computed now (and kept if the scan is complete)."""
        if self.cache is None or self.cache.empty or not ep.cache_results:
            return ep.compute(target, args, ctx)
        key = result_key(ep, target, args, named)
        data = self.cache.get(key)
        if data is not None:
            self.metrics.result_hits.inc()
            return data if isinstance(data, Result) else stored.load(data)
        result = ep.compute(target, args, ctx)
        # an answer from a kept reduction is made again in milliseconds: not worth its bytes in the cache (a
        # dragged ring asks for a new one at every step)
        if target.complete and result.source != "reduction":
            for a in result.arrays.values():  # kept as it is in memory and shared by later answers: read-only
                a.flags.writeable = False
            self.cache.put(key, result, encode=stored.dump)  # after the answer
        return result

    def _check(self, ep: Endpoint, plan: Plan, fmt: str) -> None:
        """Limits and format fit, from the plan alone: nothing has been read yet."""
        if fmt in PLANE_FORMATS and ep.target != "folder" and not plan.has_plane:
            raise BadParameter("format", f"{fmt} needs a 2-D answer, this one is {plan.shape}",
                               "npy, tiff, json, h5 or mat")
        size = plan.nbytes * TEXT_EXPANSION.get(fmt, 1)
        if size > self.config.max_output_bytes:
            raise TooLarge(
                f"the answer would be about {size} bytes, over the limit of {self.config.max_output_bytes}; "
                "select fewer points (horz, vert) or bin more",
                limit="max_output_bytes", estimate=size,
            )
        if plan.frames > self.config.max_frames:
            raise TooLarge(
                f"the answer reads {plan.frames} frames, over the limit of {self.config.max_frames}; "
                "select fewer points (horz, vert)",
                limit="max_frames", estimate=plan.frames,
            )
