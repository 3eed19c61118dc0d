"""The OpenAPI 3 document and the /api index, generated from the endpoints' declarations."""

from __future__ import annotations

from typing import Any

import numpy as np

import dada
from dada.encoders import CONTENT_TYPES
from dada.encoders.render import CMAPS
from dada.endpoint import Endpoint

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "status", "message"],
    "properties": {
        "error": {"type": "string"},
        "status": {"type": "integer"},
        "message": {"type": "string"},
        "parameter": {"type": "string"},
        "allowed": {"type": "string"},
    },
}

ERRORS = {
    "400": "A parameter is malformed or out of range; the body names it and what is allowed.",
    "404": "No such scan, folder or frame (also any path outside the data root).",
    "406": "No format the route produces matches the Accept header.",
    "413": "The answer would exceed a configured limit (checked before reading).",
    "422": "The data cannot be decoded (e.g. a corrupt chunk; the body names the frame).",
}

FIXED_ROUTES: dict[str, tuple[str, str]] = {
    "/": ("The web GUI.", "text/html"),
    "/api": ("API index: version, endpoints with their parameter schemas, formats.", "application/json"),
    "/api/openapi.json": ("This OpenAPI document.", "application/json"),
    "/healthz": ("Liveness and readiness.", "application/json"),
    "/metrics": ("Prometheus metrics.", "text/plain"),
}


def _operation(ep: Endpoint) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    if ep.target == "folder":
        params.append({"name": "folder", "in": "path", "required": True,
                       "description": "Folder below the data root (may contain '/').",
                       "schema": {"type": "string"}})
    else:
        params.append({"name": "scan", "in": "path", "required": True,
                       "description": "Scan path below the data root (may contain '/').",
                       "schema": {"type": "string"}})
        if ep.item is not None:
            desc = ep.item.doc + (" (may be left out when a query parameter names it)" if ep.item_optional else "")
            params.append({"name": ep.item.name, "in": "path", "required": True, "description": desc,
                           "schema": ep.item.schema()})
        params.append({"name": "fmt", "in": "path", "required": True, "description": "Output format.",
                       "schema": {"type": "string", "enum": list(ep.formats)}})
    for p in ep.model.params:
        params.append({"name": p.name, "in": "query", "required": p.required, "description": p.doc,
                       "schema": p.schema()})
    responses: dict[str, Any] = {
        "200": {"description": "The answer in the requested format.",
                "content": {CONTENT_TYPES[f]: {} for f in ep.formats}},
        "304": {"description": "Not modified (If-None-Match matched the ETag)."},
    }
    for code, text in ERRORS.items():
        responses[code] = {"description": text,
                           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {"operationId": ep.name, "summary": ep.summary, "parameters": params, "responses": responses,
            "x-version": ep.version}


def openapi(endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in endpoints:
        paths[ep.path_template()] = {"get": _operation(ep)}
    for path, (summary, ctype) in FIXED_ROUTES.items():
        paths[path] = {"get": {"operationId": path.strip("/").replace("/", "_").replace(".", "_"),
                               "summary": summary,
                               "responses": {"200": {"description": summary, "content": {ctype: {}}}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "dada", "version": dada.__version__,
                 "description": "The data daemon for scanning X-ray beamlines: frames and maps by URL."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }


def index(endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    return {
        "name": "dada",
        "version": dada.__version__,
        "endpoints": [ep.describe() for ep in endpoints],
        "formats": CONTENT_TYPES,
        "openapi": "/api/openapi.json",
        "colormaps": colormap_tables(),
    }


def colormap_tables() -> dict[str, str]:
    """Each png colormap as 256 colours in hex (``rrggbb`` × 256), so the GUI paints live maps and colour
    bars with the server's own colours instead of a copy of them."""
    from matplotlib import colormaps

    tables = {}
    for name in CMAPS:
        rgb = colormaps[name](np.linspace(0.0, 1.0, 256), bytes=True)[:, :3]
        tables[name] = rgb.tobytes().hex()
    return tables
