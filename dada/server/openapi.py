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
    "401": "The server needs a token (Authorization: Bearer, or ?token=) and none valid was given.",
    "403": "The token does not grant this scan, folder or file.",
    "404": "No such scan, folder or frame (also any path outside the data root).",
    "406": "No format the route produces matches the Accept header.",
    "409": "The request was cancelled through its progress stream.",
    "413": "The answer, or the work to make it, would exceed a configured limit (checked before reading).",
    "422": "The data cannot be decoded (e.g. a corrupt chunk; the body names the frame).",
    "502": "Analysis nodes failed on some jobs after retries; the body names them.",
    "503": "Busy, or the storage does not answer: try again after Retry-After.",
    "504": "Analysis nodes timed out on some jobs after retries.",
}
# What the HTTP layer answers before any route (dada.server.http_errors), on every path, also as JSON.
PROTOCOL_ERRORS = {
    "405": "The method is not one this route allows (the Allow header lists them).",
    "414": "The request line is too long.",
    "431": "A header, or all of them, is too large.",
    "500": "An internal error; the server log has the details.",
    "501": "An unknown method or transfer coding.",
    "505": "An HTTP version other than 1.x.",
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
    responses.update(_errors({**ERRORS, **PROTOCOL_ERRORS}))
    return {"operationId": ep.name, "summary": ep.summary, "parameters": params, "responses": responses,
            "x-version": ep.version}


def _errors(codes: dict[str, str]) -> dict[str, Any]:
    return {code: {"description": text,
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            for code, text in codes.items()}


RID = {"name": "rid", "in": "path", "required": True, "description": "The request's X-Request-Id.",
       "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}}
PROGRESS = {
    "get": {"operationId": "progress", "summary": "Progress of a named request as server-sent events.",
            "parameters": [RID],
            "responses": {"200": {"description": "progress events, then an end event",
                                  "content": {"text/event-stream": {}}},
                          **_errors({k: ERRORS[k] for k in ("401", "403")}), **_errors(PROTOCOL_ERRORS)}},
    "delete": {"operationId": "cancel", "summary": "Cancel a running named request.", "parameters": [RID],
               "responses": {"202": {"description": "cancelled", "content": {"application/json": {}}},
                             **_errors({k: ERRORS[k] for k in ("401", "403", "404")}),
                             **_errors(PROTOCOL_ERRORS)}},
}


def openapi(endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for ep in endpoints:
        paths[ep.path_template()] = {"get": _operation(ep)}
    for path, (summary, ctype) in FIXED_ROUTES.items():
        paths[path] = {"get": {"operationId": path.strip("/").replace("/", "_").replace(".", "_") or "gui",
                               "summary": summary,
                               "responses": {"200": {"description": summary, "content": {ctype: {}}},
                                             **_errors(PROTOCOL_ERRORS)}}}
    paths["/progress/{rid}"] = PROGRESS
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
