"""Errors of the HTTP layer as JSON, like every other error, never quoting the request.

aiohttp answers what its parser rejects (and crashes outside the app's middlewares) with a
``text/plain`` 400 that quotes the offending request line or header back; the app's middlewares
never see those requests. :class:`JsonErrorRunner` serves the app through a connection handler
whose ``handle_error`` answers with an :class:`HttpError` body instead, and :func:`check_request`
(called by the ``errors`` middleware) refuses what aiohttp's parsers let through.

Status mapping (RFC 9110, RFC 9112, RFC 6585):

- 400: malformed request line, header or framing: NUL or other forbidden bytes, a header line
  without a colon, obs-fold, a bad or duplicate Content-Length, Content-Length with
  Transfer-Encoding, chunked not the final transfer coding (RFC 9112 §6.3), a bad chunk size,
  HTTP/1.1 without Host or with two (RFC 9112 §3.2); an absolute-form target whose authority is
  not the Host header (the client must send them equal, RFC 9112 §3.2); TLS on this plain port.
- 405: CONNECT, since this server is not a proxy (RFC 9110 §9.3.6), with ``Allow: GET,HEAD``;
  other known methods a route lacks get the router's 405, whose Allow the middleware keeps.
- 414: a request line (llhttp: request target) longer than :data:`MAX_REQUEST_LINE` bytes.
- 431: a header line longer than :data:`MAX_FIELD` bytes, or more than 128 header lines.
- 501: an unknown method; methods are case-sensitive (RFC 9110 §9.1), so ``get`` is one;
  a transfer coding other than chunked (RFC 9112 §6.1).
- 505: an HTTP major version other than 1 (RFC 9110 §15.6.6).
- 500 and 504: a crash or a timeout outside the middlewares.

The C parser (llhttp, aiohttp's default) rejects unknown and lower-case methods and HTTP
versions it does not know (also 1.2) itself. The pure-Python one (``AIOHTTP_NO_EXTENSIONS=1``)
accepts ``FOO`` and ``HTTP/9.9``, which :func:`check_request` then refuses, but upper-cases
``get`` before anything here can see it, so with it lower-case methods are served.

Checked against aiohttp 3.14.5. ``RequestHandler.handle_error``, ``Server.__call__`` (the
protocol factory) with ``Server._loop``/``_kwargs``, and ``AppRunner._make_server`` are aiohttp
internals, and so is telling parse errors apart: by exception class, by the limit a
``LineTooLong`` reports (hence distinct limits), and by aiohttp's and llhttp's fixed messages.
Any of that changing makes an error a plain JSON 400, never a quoting one.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError, LineTooLong

from dada.encoders.json import dumps
from dada.errors import DadaError

MAX_FIELD = 8190  # bytes in one header line: aiohttp's default
MAX_REQUEST_LINE = 8192  # not MAX_FIELD, so that a LineTooLong's limit tells 414 from 431
KNOWN_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_POST, hdrs.METH_PUT, hdrs.METH_DELETE,
                           hdrs.METH_CONNECT, hdrs.METH_OPTIONS, hdrs.METH_TRACE, hdrs.METH_PATCH})  # RFC 9110, 5789
TLS_MESSAGE = "Received HTTPS traffic on an HTTP port"  # both parsers, for a TLS handshake
TOO_MANY_HEADERS = "Too many headers received"  # both parsers, beyond max_headers
BAD_VERSION = "Bad status line:\n  Invalid HTTP version"  # llhttp's, for a well-formed version it does not know
MALFORMED = "malformed HTTP request"
UNKNOWN_METHOD = "unknown method (method names are case-sensitive)"
UNSUPPORTED_VERSION = "unsupported HTTP version"


class HttpError(DadaError):
    """A request refused at the HTTP layer; kind ``http``, like the router's own 404 and 405."""

    kind = "http"

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def check_request(request: web.BaseRequest) -> None:
    """Raise :class:`HttpError` for what aiohttp's parsers accept but RFC 9110/9112 refuse (module docstring)."""
    if request.version.major != 1:
        raise HttpError(505, UNSUPPORTED_VERSION)
    target = request.raw_path
    absolute = target[:1] not in ("/", "*") and request.method != hdrs.METH_CONNECT
    if absolute and urlsplit(target).netloc.lower() != request.headers.get(hdrs.HOST, "").lower():
        raise HttpError(400, "the request target names another host than the Host header")
    if request.method not in KNOWN_METHODS:
        raise HttpError(501, UNKNOWN_METHOD)
    codings = {c.strip().lower() for v in request.headers.getall(hdrs.TRANSFER_ENCODING, ()) for c in v.split(",")}
    if codings - {"chunked", ""}:
        raise HttpError(501, "unsupported transfer coding: only chunked is")
    if request.method == hdrs.METH_CONNECT:
        raise HttpError(405, "CONNECT is not supported: this server is not a proxy", Allow="GET,HEAD")


def http_error(status: int, exc: BaseException | None) -> DadaError:
    """The error for what aiohttp hands ``handle_error``: a parser's exception (with ``status`` 400),
    a crash (500) or a timeout (504). Messages are fixed: the exceptions' own quote the request."""
    if isinstance(exc, LineTooLong):
        if exc.args[1] == MAX_REQUEST_LINE:
            return HttpError(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
        return HttpError(431, f"header line longer than {MAX_FIELD} bytes")
    if isinstance(exc, BadHttpMethod):  # a BadStatusLine, so first
        if exc.message == TLS_MESSAGE:
            return HttpError(400, "TLS sent to a plain HTTP port")
        if " " in exc.line:  # the pure-Python parser's request line short of a part, not a method
            return HttpError(400, MALFORMED)
        return HttpError(501, UNKNOWN_METHOD)
    if isinstance(exc, BadStatusLine) and exc.message.startswith(BAD_VERSION):
        return HttpError(505, UNSUPPORTED_VERSION)
    if isinstance(exc, HttpProcessingError):
        if exc.message == TOO_MANY_HEADERS:
            return HttpError(431, "too many header lines")
        return HttpError(400, MALFORMED)
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        return DadaError("internal error; the server log has the details")  # as the errors middleware says
    return HttpError(status, HTTPStatus(status).phrase)


class JsonErrorHandler(web.RequestHandler):
    """aiohttp's connection handler, answering parse errors and crashes outside the middlewares with JSON."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's own first, for its logging and its ConnectionError once a response has begun;
        then, instead of its quoting text, the JSON error, closing the connection as it does."""
        super().handle_error(request, status, exc, message)
        error = http_error(status, exc)
        response = web.Response(body=dumps(error.body()), status=error.status, content_type="application/json")
        response.force_close()
        return response


class QuietParseErrors(logging.Filter):
    """Drop aiohttp's tracebacks for requests its parser refused: each is a client's mistake, answered
    with a JSON 4xx, and logging ~1 kB per one lets anyone fill the server's disk."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, HttpProcessingError)


class JsonErrorServer(web.Server):
    """``web.Server`` whose connections are :class:`JsonErrorHandler` (``__call__`` is the protocol factory)."""

    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(web.AppRunner):
    """``web.AppRunner`` serving through :class:`JsonErrorServer`, with the line limits :func:`http_error` reads."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, max_line_size=MAX_REQUEST_LINE, max_field_size=MAX_FIELD, **kwargs)

    async def _make_server(self) -> web.Server:
        """The app's server (after its startup), remade as a :class:`JsonErrorServer` with the same arguments."""
        server = await super()._make_server()
        return JsonErrorServer(server.request_handler, request_factory=server.request_factory,
                               handler_cancellation=server.handler_cancellation, loop=server._loop, **server._kwargs)
