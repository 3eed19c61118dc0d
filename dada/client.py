"""Python client: dada URLs as methods returning numpy arrays with their parameters and provenance.

    >>> c = Client("http://localhost:8000")
    >>> a = c.darkfield("eiger/u16/scan_0001", rmin=12, horz=slice(0, 4))
    >>> a.data.shape, a.attrs["darkfield"]["rmin"], a.url

The methods are made from the server's ``/api`` when the client is built, so an analysis added on the
server (a plug-in included) is a method here with no change to this module, and its parameters are
checked before anything is sent. Plain stdlib HTTP: retries with backoff when the server is busy (503)
or the connection drops, the server's JSON error as :class:`ServerError`, a tqdm bar fed by the
server's progress stream (``X-Request-Id`` + ``GET /progress/{id}``), a bearer token on every request.
``dada get URL -o FILE`` is :func:`download`.
"""

from __future__ import annotations

import contextlib
import http.client
import inspect
import io
import json
import os
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

import h5py
import numpy as np
from tqdm.auto import tqdm

from dada.errors import DadaError

TIMEOUT = 300.0  # s without a byte from the server: a big map is computed before its first byte is sent
BACKOFF = 0.5  # s before the first retry, doubled each time, with ±50 % jitter ...
MAX_DELAY = 30.0  # ... and never longer than this, Retry-After included
GRACE = 5.0  # s an answered request waits for its stream's last events (already sent before the answer)
RANGE_SYNTAX = "start:stop"  # a parameter whose x-syntax says this also takes a Python slice
AUTH_HINTS = {
    401: "; this server needs a token: pass token= (dada get --token) or set DADA_TOKEN",
    403: "; the token does not grant this path: pass another token= (dada get --token) or set DADA_TOKEN",
}


class ServerError(DadaError):
    """The server's error answer: its status and the JSON body's fields (``message``, ``parameter``,
    ``allowed``, ...), so a script can tell which parameter to fix. Never raised for a 503 that a retry cured."""

    def __init__(self, status: int, body: dict[str, Any], url: str = "") -> None:
        message = str(body.get("message") or http.client.responses.get(status, "error")) + AUTH_HINTS.get(status, "")
        super().__init__(message, **{k: v for k, v in body.items() if k not in ("error", "status", "message")})
        self.status = status
        self.kind = str(body.get("error", "http_error"))
        self.parameter: str | None = body.get("parameter")
        self.allowed: str | None = body.get("allowed")
        self.url = url

    def __str__(self) -> str:
        return f"{self.status} {self.message} ({self.url})" if self.url else f"{self.status} {self.message}"


@dataclass(frozen=True)
class Answer:
    """What an array route answered: ``data`` (the primary array, the one ``output`` names), ``arrays``
    (every array of the answer by name) and ``attrs`` (the parameters and provenance the server reports,
    plus ``url`` and ``request_id``). ``np.asarray(answer)`` and ``plt.imshow(answer)`` see ``data``."""

    data: np.ndarray
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]

    @property
    def url(self) -> str:
        """The exact URL asked: paste it in a browser (png) or curl to get the same answer."""
        return str(self.attrs["url"])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self.data, dtype=dtype)

    def __repr__(self) -> str:
        return f"Answer({self.data.dtype}{list(self.data.shape)}, arrays={list(self.arrays)}, url={self.url!r})"


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    url: str
    request_id: str


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http:// or https:// URL")
    return parts


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the URL's host and the request target (path and query) to send on it."""
    parts = _split(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return cls(parts.netloc, timeout=timeout), (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _events(lines: Iterable[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-sent events as (event, JSON data); comments (keep-alives) skipped."""
    kind, data = "message", []
    for raw in lines:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []


class _Watch(threading.Thread):
    """Follows one request's progress stream in the background, into a tqdm bar and ``last``.

    Progress is a courtesy: a stream that fails, never comes or outlives the answer ends the bar, never
    the request. :meth:`finish` closes the stream's socket, so nothing waits on it afterwards."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float, label: str) -> None:
        super().__init__(daemon=True, name=f"dada-progress-{label}")
        self.url, self.headers, self.timeout, self.label = url, headers, timeout, label
        self.last: dict[str, Any] | None = None  # the latest progress event: done, total, cells, values
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._finished = False
        self.start()

    def run(self) -> None:
        bar = None
        conn, target = _connection(self.url, self.timeout)
        try:
            conn.connect()
            with self._lock:
                if self._finished:
                    return
                self._sock = conn.sock
            conn.request("GET", target, headers=self.headers)
            resp = conn.getresponse()
            if resp.status != 200:
                return
            for kind, event in _events(resp):
                if kind == "end":
                    return
                if kind == "progress":
                    self.last = event
                    if bar is None:
                        bar = tqdm(total=event["total"], desc=self.label, unit="block", leave=False, delay=0.5)
                    bar.total = event["total"]
                    bar.update(event["done"] - bar.n)
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            return
        finally:
            if bar is not None:
                bar.close()
            conn.close()

    def finish(self, answered: bool) -> dict[str, Any] | None:
        """Stop following; the last progress event seen."""
        if answered and self.last is not None:
            self.join(GRACE)  # the server sent the stream's end before the answer: let the bar reach it
        with self._lock:
            self._finished = True
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader at once
        self.join(1.0)
        return self.last


def _delay(reply: _Reply | None, attempt: int) -> float:
    """Seconds before the next attempt: the server's Retry-After (seconds), else exponential backoff with
    jitter, so clients turned away together do not all come back at the same instant."""
    try:
        return min(MAX_DELAY, max(0.0, float(reply.headers["retry-after"])))  # type: ignore[union-attr]
    except (AttributeError, KeyError, ValueError):
        return min(MAX_DELAY, BACKOFF * 2**attempt) * random.uniform(0.5, 1.5)


class _Transport:
    """GET with the token, retries and progress that every request of a client (or ``dada get``) shares."""

    RETRIED = (ConnectionError, http.client.IncompleteRead)  # a dropped connection; timeouts are not retried

    def __init__(self, base: str, token: str | None, progress: bool, retries: int, timeout: float) -> None:
        _split(base)
        self.base, self.progress, self.retries, self.timeout = base.rstrip("/"), progress, retries, timeout
        token = os.environ.get("DADA_TOKEN") if token is None else token
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.last_progress: dict[str, Any] | None = None

    def get(self, url: str, follow: bool = True) -> _Reply:
        """The answer to a GET: retried on 503 (after Retry-After) and on lost connections, never on
        other errors, which raise :class:`ServerError`. ``follow``: show the request's progress."""
        self.last_progress = None
        attempt = 0
        while True:
            reply = None
            try:
                reply = self._attempt(url, follow and self.progress)
            except self.RETRIED as exc:
                if attempt >= self.retries:
                    raise ConnectionError(f"no answer from {url} after {attempt + 1} attempts: {exc}") from exc
            else:
                if reply.status < 300:
                    return reply
                if reply.status != 503 or attempt >= self.retries:
                    raise ServerError(reply.status, _error_body(reply), url)
            time.sleep(_delay(reply, attempt))
            attempt += 1

    def _attempt(self, url: str, follow: bool) -> _Reply:
        rid = f"py-{uuid.uuid4().hex}"  # a fresh id per attempt: a stream that ended stays ended
        label = urlsplit(url.removeprefix(self.base)).path.strip("/").split("/")[0]  # the route: darkfield, ...
        watch = _Watch(f"{self.base}/progress/{rid}", self.auth, self.timeout, label) if follow else None
        status = 0
        try:
            conn, target = _connection(url, self.timeout)
            try:
                conn.request("GET", target, headers={**self.auth, "X-Request-Id": rid})
                resp = conn.getresponse()
                status = resp.status
                return _Reply(status, {k.lower(): v for k, v in resp.getheaders()}, resp.read(), url, rid)
            finally:
                conn.close()
        finally:
            if watch is not None:
                self.last_progress = watch.finish(answered=200 <= status < 300)


def _error_body(reply: _Reply) -> dict[str, Any]:
    """The server's JSON error body; a proxy's plain-text or HTML error as its message."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"message": reply.body.decode(errors="replace").strip()[:500]}


def _attr(value: Any) -> Any:
    """An HDF5 attribute back as the server had it: it stores lists and dicts as JSON text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _answer(reply: _Reply, primary: str) -> Answer:
    """The h5 answer read from memory; ``primary`` names ``data`` (the first array if absent)."""
    with h5py.File(io.BytesIO(reply.body), "r") as f:
        arrays = {name: obj[()] for name, obj in f.items() if isinstance(obj, h5py.Dataset)}
        attrs = {k: _attr(v) for k, v in f.attrs.items()}
    attrs.update(url=reply.url, request_id=reply.request_id)
    return Answer(arrays[primary] if primary in arrays else next(iter(arrays.values())), arrays, attrs)


def _text(name: str, value: Any, schema: dict[str, Any]) -> str:
    """A Python value spelled as the server's URL parser reads it."""
    syntax = schema.get("x-syntax", "")
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, slice):
        if RANGE_SYNTAX not in syntax:
            raise TypeError(f"{name} takes no slice ({syntax or schema.get('type', 'a value')})")
        text = ":".join("" if v is None else str(v) for v in (value.start, value.stop))
        return text if value.step is None else f"{text}:{value.step}"
    if isinstance(value, tuple | list):
        return ("x" if syntax.startswith("VxH") else ",").join(str(v) for v in value)
    return str(value)


def _describe(schema: dict[str, Any]) -> str:
    """A parameter's schema as one line of a docstring: type, unit, choices, syntax, range, default."""
    bits = [schema.get("type", "string")]
    if "x-unit" in schema:
        bits.append(f"in {schema['x-unit']}")
    if "enum" in schema:
        bits.append("one of " + ", ".join(map(str, schema["enum"])))
    if "x-choices" in schema:
        bits.append("any of " + ", ".join(schema["x-choices"]) + " (a tuple or comma-separated)")
    if "x-syntax" in schema:
        bits.append(schema["x-syntax"] + (", or a slice" if RANGE_SYNTAX in schema["x-syntax"] else ""))
    if "minimum" in schema:
        bits.append((">" if schema.get("exclusiveMinimum") else ">=") + f" {schema['minimum']}")
    if "maximum" in schema:
        bits.append(f"<= {schema['maximum']}")
    if "default" in schema:
        bits.append(f"default {schema['default']}")
    return ", ".join(bits)


class Client:
    """A dada server as Python methods: one per endpoint of its ``/api`` (dashes as underscores:
    ``tomo_slice``), e.g. ``browse(folder="")``, ``meta(scan)``, ``frame(scan, n=None, at=None)``,
    ``sum(scan, vert=..., horz=...)``, ``darkfield(scan, rmin=...)``. Array routes return an
    :class:`Answer` (fetched as h5, which carries every array and the attributes); JSON-only routes
    return the document. Keyword arguments are the route's parameters (``help(c.darkfield)`` lists
    them; png-only display settings are left out); ``stxm``'s ``darkfield.rmin`` is ``darkfield_rmin``.

    ``token`` defaults to ``$DADA_TOKEN``; ``progress=False`` hides the bar and does not follow the
    progress stream; ``retries`` bounds the retries after a 503 or a lost connection; ``timeout`` is in
    seconds without a byte from the server. ``last_progress`` is the last progress event the latest
    request's stream delivered (``done``, ``total``, ...), or None."""

    browse: Callable[..., dict[str, Any]]
    meta: Callable[..., dict[str, Any]]
    frame: Callable[..., Answer]
    sum: Callable[..., Answer]

    def __init__(self, url: str, token: str | None = None, progress: bool = True, retries: int = 5,
                 timeout: float = TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self._http = _Transport(self.url, token, progress, retries, timeout)
        self.api: dict[str, Any] = json.loads(self._http.get(f"{self.url}/api", follow=False).body)
        self.endpoints: dict[str, dict[str, Any]] = {e["name"].replace("-", "_"): e for e in self.api["endpoints"]}
        for name, ep in self.endpoints.items():
            setattr(self, name, self._method(name, ep))

    @property
    def last_progress(self) -> dict[str, Any] | None:
        return self._http.last_progress

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Reached only for names that are neither attributes nor endpoints: say what the server offers."""
        offered = ", ".join(self.__dict__.get("endpoints", ()))
        raise AttributeError(f"{name!r}: no such endpoint on {self.__dict__.get('url')} (it has: {offered})")

    def __repr__(self) -> str:
        return f"Client({self.url!r}, dada {self.api.get('version')}: {', '.join(self.endpoints)})"

    def _method(self, name: str, ep: dict[str, Any]) -> Callable[..., Any]:
        """The method of one endpoint: signature, docstring and checks from its /api entry."""
        schemas = {k: s for k, s in ep["parameters"].items() if not s.get("x-presentation") or k == "output"}
        keywords = {re.sub(r"\W", "_", k): k for k in schemas}  # Python name -> URL name
        spelled = {**{k: k for k in keywords}, **{k: py for py, k in keywords.items()}}  # either spelling
        target = re.search(r"\{(\w+)\}", ep["path"]).group(1)  # type: ignore[union-attr]  # scan or folder
        item = ep["item"]
        fmt = "h5" if "h5" in ep["formats"] else "json"
        positional = [inspect.Parameter(target, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        **({"default": ""} if ep["target"] == "folder" else {}))]
        if item is not None:
            positional.append(inspect.Parameter(item["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                **({"default": None} if item["optional"] else {})))
        sig = inspect.Signature(positional + [inspect.Parameter(py, inspect.Parameter.KEYWORD_ONLY, default=None)
                                              for py in keywords])

        def method(*args: Any, **kwargs: Any) -> Any:
            unknown = [k for k in kwargs if k not in spelled and k not in (p.name for p in positional)]
            if unknown:
                raise TypeError(f"{name}() got unexpected keyword argument(s) {', '.join(unknown)}; "
                                f"it takes {', '.join([p.name for p in positional] + list(keywords)) or 'none'}")
            given = sig.bind(*args, **{spelled.get(k, k): v for k, v in kwargs.items()}).arguments
            query = {keywords[py]: _text(py, v, schemas[keywords[py]]) for py, v in given.items()
                     if py in keywords and v is not None}
            values = {target: quote(str(given.get(target, "")), safe="/"), "fmt": fmt}
            path = ep["path"]
            if item is not None:
                if given.get(item["name"]) is None:
                    path = path.replace(f"/{{{item['name']}}}", "")
                else:
                    values[item["name"]] = str(int(given[item["name"]]))
            url = self.url + path.format_map(values) + (f"?{urlencode(query, safe=',:')}" if query else "")
            reply = self._http.get(url)
            if fmt == "json":
                return json.loads(reply.body)
            # the array `output` names, else the one named as the route (tomo-sinogram: sinogram, not angles)
            return _answer(reply, query.get("output") or schemas.get("output", {}).get("default")
                           or ep["name"].split("-")[-1])

        method.__name__ = method.__qualname__ = name
        method.__signature__ = sig  # type: ignore[attr-defined]
        method.__doc__ = _doc(ep, target, fmt, keywords, schemas)
        return method


def _doc(ep: dict[str, Any], target: str, fmt: str, keywords: dict[str, str], schemas: dict[str, Any]) -> str:
    """A generated method's help: what it answers and each parameter's schema, as /api states them."""
    returns = ("an Answer: .data (the array `output` names), .arrays (all), .attrs (parameters, provenance, url)"
               if fmt == "h5" else "the JSON document")
    lines = [ep.get("summary", ""), "", f"GET {ep['path']} with fmt={fmt}; returns {returns}.", "", "Parameters",
             "----------", f"{target} : str", f"    The {target}'s path below the data root."]
    item = ep["item"]
    if item is not None:
        lines += [f"{item['name']} : {_describe(item)}" + (", optional" if item["optional"] else ""),
                  f"    {item.get('description', '')}"]
    for py, k in keywords.items():
        lines += [f"{py} : {_describe(schemas[k])}", f"    {schemas[k].get('description', '')}"]
    return "\n".join(lines)


def download(url: str, output: str, token: str | None = None, progress: bool = True, retries: int = 5,
             timeout: float = TIMEOUT) -> None:
    """Save the answer to any dada URL in a file (``-``: stdout), with the client's progress bar, retries
    and errors (:class:`ServerError`). The file is written only once the whole answer is in, so a failed
    request leaves no partial file behind."""
    parts = _split(url)
    body = _Transport(f"{parts.scheme}://{parts.netloc}", token, progress, retries, timeout).get(url).body
    if output == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    else:
        with open(output, "wb") as f:
            f.write(body)
