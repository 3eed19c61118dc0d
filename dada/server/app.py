"""The aiohttp application: fixed routes, one generic route per endpoint, JSON errors."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

import dada
from dada.config import Config
from dada.encoders.json import dumps
from dada.errors import DadaError
from dada.registry import ENDPOINTS
from dada.server.metrics import Metrics
from dada.server.openapi import index, openapi
from dada.server.routing import Dispatcher
from dada.sources.catalog import Catalog
from dada.sources.handles import HandleCache
from dada.stxm.engine import warm_up

log = logging.getLogger("dada.server")


def json_response(doc: object, status: int = 200, **headers: str) -> web.Response:
    return web.Response(body=dumps(doc), status=status, content_type="application/json", headers=headers)


@web.middleware
async def errors(request: web.Request, handler):
    """Every failure becomes a JSON body with a status; tracebacks go to the log only."""
    try:
        return await handler(request)
    except DadaError as exc:
        return json_response(exc.body(), exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response({"error": "http", "status": exc.status, "message": exc.reason}, exc.status)
    except Exception:
        log.exception("internal error on %s", request.rel_url)
        return json_response(
            {"error": "internal", "status": 500, "message": "internal error; the server log has the details"},
            500,
        )


def make_app(config: Config) -> web.Application:
    handles = HandleCache(config.handle_cache)
    catalog = Catalog(config.roots, handles, config.dataset_paths)
    metrics = Metrics()
    pool = ThreadPoolExecutor(config.threads, thread_name_prefix="dada-work")
    dispatch = Dispatcher(catalog, config, metrics, pool)
    api_doc, openapi_doc = index(ENDPOINTS), openapi(ENDPOINTS)

    async def api(_: web.Request) -> web.Response:
        return json_response(api_doc)

    async def openapi_json(_: web.Request) -> web.Response:
        return json_response(openapi_doc)

    async def healthz(_: web.Request) -> web.Response:
        return json_response({"status": "ok", "version": dada.__version__, "roots": sorted(config.roots)})

    async def metrics_route(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def root(_: web.Request) -> web.Response:
        raise web.HTTPFound("/api")

    async def startup(_: web.Application) -> None:
        # Compile (or load the cached) numba kernels before the first request, not during it.
        await asyncio.get_running_loop().run_in_executor(pool, warm_up)

    async def shutdown(_: web.Application) -> None:
        pool.shutdown(wait=False, cancel_futures=True)
        handles.close()

    app = web.Application(middlewares=[errors])
    app.router.add_get("/", root)
    app.router.add_get("/api", api)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_route)
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


def serve(config: Config) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.info("dada %s serving %s on http://%s:%d", dada.__version__,
             ", ".join(f"{k or '/'}={v}" for k, v in config.roots.items()), config.host, config.port)
    web.run_app(make_app(config), host=config.host, port=config.port, print=None, access_log=None)
