"""Errors a request can end in; each maps to one HTTP status and a JSON body.

They are raised deep in the framework-free core (sources, analyses, encoders)
and turned into responses in one place (``dada.server.app``).
"""

from __future__ import annotations

from typing import Any


class DadaError(Exception):
    """Base class: a user-facing error with an HTTP status."""

    status = 500
    kind = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.kind, "status": self.status, "message": self.message, **self.details}


class BadParameter(DadaError):
    """A query or path parameter is malformed or out of range (400)."""

    status = 400
    kind = "bad_parameter"

    def __init__(self, parameter: str, message: str, allowed: str | None = None) -> None:
        details: dict[str, Any] = {"parameter": parameter}
        if allowed is not None:
            details["allowed"] = allowed
        super().__init__(f"{parameter}: {message}", **details)


class Unauthorized(DadaError):
    """Access control is on and the request carries no valid token (401)."""

    status = 401
    kind = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="dada"'}


class Forbidden(DadaError):
    """The token does not grant what the request names (403); also a node refusing all but its front."""

    status = 403
    kind = "forbidden"


class NotFound(DadaError):
    """Unknown scan, frame or route (404). Also used for paths outside the data root."""

    status = 404
    kind = "not_found"


class TooLarge(DadaError):
    """The answer would exceed a configured limit; raised before any data is read (413)."""

    status = 413
    kind = "too_large"


class Cancelled(DadaError):
    """The client asked, through its progress stream, to stop a running request (409)."""

    status = 409
    kind = "cancelled"


class Unavailable(DadaError):
    """The storage holding the data does not answer now (an I/O error, a dead mount): not absence (503)."""

    status = 503
    kind = "unavailable"
    headers = {"Retry-After": "5"}


class Unprocessable(DadaError):
    """The data exist but cannot be decoded or interpreted (422), e.g. a corrupt chunk."""

    status = 422
    kind = "unprocessable"


class NotAcceptable(DadaError):
    """No format the route can produce matches the request's Accept header (406)."""

    status = 406
    kind = "not_acceptable"


class NodesFailed(DadaError):
    """Analysis nodes failed to answer jobs, after retries on other nodes (502); details name them."""

    status = 502
    kind = "nodes_failed"


class NodesTimedOut(NodesFailed):
    """Analysis nodes did not answer jobs in time, after retries and hedging (504)."""

    status = 504
    kind = "nodes_timed_out"


class Busy(DadaError):
    """This node is saturated: try again shortly (503 with Retry-After) rather than queue without bound."""

    status = 503
    kind = "busy"
    headers = {"Retry-After": "1"}
