"""The aiohttp application: fixed routes, one generic route per endpoint, JSON errors."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web

import dada
from dada.cache import make_cache
from dada.cache.writer import CacheWriter
from dada.cluster.blocks import block_frames
from dada.cluster.front import BLOCK_PREFIX, FRAMES_PREFIX, ClusterFrames, ClusterPartials
from dada.cluster.local import LocalNodes
from dada.cluster.node import BlockService
from dada.cluster.nodes import NodePool
from dada.config import Config
from dada.encoders.json import dumps
from dada.errors import DadaError
from dada.h5grove.routes import H5Grove
from dada.nodeguard import NodeGuard
from dada.registry import ENDPOINTS
from dada.server.access import Access
from dada.server.heap import KEPT, return_freed_memory, small_pages
from dada.server.http_errors import JsonErrorRunner, QuietParseErrors, check_request
from dada.server.metrics import Metrics
from dada.server.openapi import index, openapi
from dada.server.progress import ProgressHub
from dada.server.routing import Dispatcher
from dada.sources.catalog import Catalog
from dada.sources.handles import HandleCache
from dada.sources.scan import Scan

log = logging.getLogger("dada.server")
GUI = Path(dada.__file__).resolve().parent / "gui"  # the web GUI's static files (the top-level gui/ folder)


def json_response(doc: object, status: int = 200, **headers: str) -> web.Response:
    return web.Response(body=dumps(doc), status=status, content_type="application/json", headers=headers)


@web.middleware
async def errors(request: web.Request, handler):
    """Every failure becomes a JSON body with a status; tracebacks go to the log only. Requests
    aiohttp's parser passes but HTTP does not are refused first; a 405 keeps the router's Allow."""
    try:
        check_request(request)
        return await handler(request)
    except DadaError as exc:
        return json_response(exc.body(), exc.status, **getattr(exc, "headers", {}))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers[hdrs.ALLOW]} if hdrs.ALLOW in exc.headers else {}
        return json_response({"error": "http", "status": exc.status, "message": exc.reason}, exc.status, **allow)
    except Exception:
        log.exception("internal error on %s", request.path)  # never the query: it may hold a token
        return json_response(
            {"error": "internal", "status": 500, "message": "internal error; the server log has the details"},
            500,
        )


def make_app(config: Config, role: str = "front") -> web.Application:
    """``front``: STXM partials come from nodes (configured, or local ones it starts); ``node``: from
    this process's engine, and the internal block route answers the front."""
    handles = HandleCache(config.handle_cache)
    catalog = Catalog(config.roots, handles, config.dataset_paths, config.recheck_seconds)
    metrics = Metrics()
    pool = ThreadPoolExecutor(config.threads, thread_name_prefix="dada-work")
    access = Access(config.tokens)
    hub = ProgressHub(access)
    cache = None
    if role == "front":
        cache = make_cache(config.cache_memory_bytes, config.cache_dir, config.cache_disk_bytes, config.aerospike,
                           namespace=config.aerospike_namespace)
        cache = CacheWriter(cache)
    dispatch = Dispatcher(catalog, config, metrics, pool, hub, cache, access)
    if cache is not None:  # the levels, and the encoded answers kept in memory
        metrics.watch_cache(lambda: {**cache.cache.stats(), "answers": dispatch.hot.answers.stats()})
    # nodes answer their front only; a front makes a secret for the local nodes it starts
    node_secret = config.node_secret or (secrets.token_hex(16) if role == "front" and not config.nodes
                                         and not config.lb else None)
    guard = NodeGuard.of(node_secret, config.node_networks)
    cluster: dict[str, Any] = {}
    local = local_partials(config.threads) if role == "node" else None  # one engine: routes and blocks
    api_doc, openapi_doc = index(ENDPOINTS), openapi(ENDPOINTS)
    if config.h5web_url:
        api_doc["h5web"] = config.h5web_url

    async def api(_: web.Request) -> web.Response:
        return json_response(api_doc)

    async def openapi_json(_: web.Request) -> web.Response:
        return json_response(openapi_doc)

    async def healthz(_: web.Request) -> web.Response:
        doc = {"status": "ok", "role": role, "version": dada.__version__, "roots": sorted(config.roots)}
        if "pool" in cluster:
            doc.update(cluster["pool"].status())
        if "local" in cluster:
            doc["local_nodes"] = cluster["local"].status()
            doc["restarts"] = cluster["local"].restarts
        return json_response(doc)

    async def metrics_route(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def root(_: web.Request) -> web.FileResponse:
        return web.FileResponse(GUI / "index.html", headers={"Cache-Control": "no-cache"})

    async def startup(_: web.Application) -> None:
        loop = asyncio.get_running_loop()
        if role == "node":
            # Compile (or load the cached) numba kernels before the first request, not during it.
            await loop.run_in_executor(pool, warm_up_kernels)
            dispatch.partials = local
            return
        urls = list(config.nodes) or ([config.lb] if config.lb else [])
        if not urls:
            cluster["local"] = LocalNodes(replace(config, node_secret=node_secret), config.local_nodes)
            urls = await loop.run_in_executor(None, cluster["local"].start)
            log.info("started %d local nodes: %s", len(urls), ", ".join(urls))
            metrics.watch_restarts(lambda: cluster["local"].restarts)
            cluster["supervisor"] = asyncio.create_task(supervise(cluster["local"]))
        slots = config.lb_concurrency if config.lb else config.per_node
        nodes = NodePool(urls, balancer=bool(config.lb), per_node=slots, job_timeout=config.job_timeout,
                         secret=node_secret)
        await nodes.start()
        cluster["pool"] = nodes
        grid = (config.reduction_dr, config.reduction_cells) if config.reduction_cells else None
        dispatch.partials = ClusterPartials(nodes, loop, cache, partial(block_size, config), grid,
                                             config.reduction_held_bytes)
        dispatch.frames = ClusterFrames(nodes, loop, partial(block_size, config))
        # What exists now lives as long as the server: keep it out of the garbage collector's scans,
        # whose full passes otherwise show as latency spikes under load.
        gc.freeze()

    async def shutdown(_: web.Application) -> None:
        if "supervisor" in cluster:
            cluster["supervisor"].cancel()
        if "pool" in cluster:
            await cluster["pool"].close()
        if "local" in cluster:
            await asyncio.get_running_loop().run_in_executor(None, cluster["local"].stop)
        pool.shutdown(wait=False, cancel_futures=True)
        dispatch.close()
        handles.close()
        if cache is not None:
            await asyncio.get_running_loop().run_in_executor(None, cache.close)  # pending writes first

    async def reduction(request: web.Request) -> web.Response:
        body = await blocks.handle(request.match_info["tail"], request.query, pool, frames=True)
        return web.Response(body=body, content_type="application/x-npy")

    async def block(request: web.Request) -> web.Response:
        body = await blocks.handle(request.match_info["tail"], request.query, pool)
        return web.Response(body=body, content_type="application/octet-stream")

    middlewares = [errors, cors(config.cors_origins)] if config.cors_origins else [errors]
    if role == "node":
        middlewares.append(guarded(guard))
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/", root)
    app.router.add_static("/gui/", GUI)
    app.router.add_get("/api", api)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/progress/{rid}", hub.handle)
    app.router.add_delete("/progress/{rid}", hub.cancel)
    if role == "node":
        multi = next(ep for ep in ENDPOINTS if ep.name == "stxm")
        blocks = BlockService(multi, catalog, local, limit=4 * config.threads,
                               reductions={ep.name: ep for ep in ENDPOINTS if ep.name in ("sum", "composite")})
        app.router.add_get(BLOCK_PREFIX + "/{tail:.*}", block)
        app.router.add_get(FRAMES_PREFIX + "/{tail:.*}", reduction)
    H5Grove(dispatch).register(app)
    for ep in ENDPOINTS:
        handler = dispatch.handler(ep)
        app.router.add_get(ep.prefix + "/{tail:.*}", handler)
        if ep.target == "folder":
            app.router.add_get(ep.prefix, handler)
    app.on_startup.append(startup)
    app.on_cleanup.append(shutdown)
    app["catalog"] = catalog
    app["metrics"] = metrics
    return app


async def supervise(local: LocalNodes, tick: float = 0.5) -> None:
    """Restart local nodes that die, for as long as the front runs."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(tick)
        try:
            await loop.run_in_executor(None, local.check)
        except OSError:
            log.exception("could not start a local node again; trying at the next tick")


def guarded(guard: NodeGuard):
    """A node's middleware: 403 for anything but its front (the shared secret or a configured network)."""

    @web.middleware
    async def check(request: web.Request, handler):
        guard.check(request.path, request.headers, request.remote)
        return await handler(request)

    return check


CORS_HEADERS = {"Access-Control-Allow-Headers": "Authorization, X-Request-Id, If-None-Match",
                "Access-Control-Expose-Headers": "ETag, X-Request-Id, X-Dada-View, X-Dada-Source, Content-Disposition",
                "Access-Control-Allow-Methods": "GET, HEAD, DELETE, OPTIONS", "Access-Control-Max-Age": "600"}


def cors(origins: tuple[str, ...]):
    """Cross-origin calls from the configured browser origins (\"*\": any): headers on answers, preflights."""
    allowed = set(origins)

    @web.middleware
    async def add(request: web.Request, handler):
        origin = request.headers.get("Origin")
        ok = origin is not None and ("*" in allowed or origin in allowed)
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            resp: web.StreamResponse = web.Response(status=204 if ok else 403)
        else:
            resp = await handler(request)
        if ok:
            resp.headers.update({**CORS_HEADERS, "Access-Control-Allow-Origin": origin, "Vary": "Origin"})
        return resp

    return add


def local_partials(threads: int) -> Any:
    """A node's engine. Imported here, not at the top: a front never runs the kernels, and numba alone
    is some 60 MB of a process's resident memory."""
    from dada.stxm.engine import Engine
    from dada.stxm.local import LocalPartials

    return LocalPartials(Engine(threads))


def warm_up_kernels() -> None:
    """Compile (or load the cached) numba kernels: a node, before its first request."""
    from dada.stxm import polarbins
    from dada.stxm.engine import warm_up

    warm_up()
    polarbins.warm_up()


def block_size(config: Config, scan: Scan) -> int:
    return config.block_frames or block_frames(scan.frame_nbytes)


def serve(config: Config, role: str = "front") -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("aiohttp.server").addFilter(QuietParseErrors())
    log.info("dada %s %s serving %s on http://%s:%d", dada.__version__, role,
             ", ".join(f"{k or '/'}={v}" for k, v in config.roots.items()), config.host, config.port)
    app = make_app(config, role)

    async def run() -> None:
        # web.run_app's AppRunner would answer parse errors with text quoting the request: serve
        # through JsonErrorRunner, with run_app's keep-alive timeout, until SIGINT or SIGTERM.
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        runner = JsonErrorRunner(app, access_log=None, keepalive_timeout=75)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
            await stop.wait()
        finally:
            await runner.cleanup()  # the app's on_cleanup stops child processes

    return_freed_memory(KEPT if config.reduction_cells else 0)  # reduction answers reuse freed memory
    if role != "node":  # a node's arrays are a block's and reused; the front's are every answer's, fresh
        small_pages()
    asyncio.run(run())
