"""The client's side of the wire: persistent connections, bounded retries, typed answers.

File bytes are received straight into the caller's buffer (``readinto`` on the
socket, the GIL released while it waits), so a fragment costs one copy out of
the kernel and no Python-level joining.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import time
import urllib.parse
from typing import Any

from dadafs import SECRET_HEADER

log = logging.getLogger("dadafs.remote")


class ServerAway(Exception):
    """The server did not answer within the retry bound."""


class Refused(ServerAway):
    """The server refuses this client (403): no secret, a wrong one, or not from an allowed network."""


class Changed(Exception):
    """The file is not the version asked for any more (its ETag moved)."""


class Remote:
    def __init__(self, url: str, retry_for: float = 3.0, timeout: float = 10.0, pool: int = 32,
                 secret: str | None = None) -> None:
        self.base = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.base)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url}: expected http://HOST[:PORT]")
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path
        self.retry_for = retry_for
        self.connect_timeout = min(1.0, retry_for)
        self.timeout = timeout
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(pool)
        self.headers = {SECRET_HEADER: secret} if secret else {}  # sent on every request
        self.requests = 0
        self.failures = 0
        self._failing_since: float | None = None  # when the current outage began; None while the server answers
        self.accepted = False  # answered since the start or the last 403

    def _connection(self) -> http.client.HTTPConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
            conn.connect()
            conn.sock.settimeout(self.timeout)
            return conn

    def _release(self, conn: http.client.HTTPConnection) -> None:
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def _url(self, kind: str, path: str) -> str:
        return f"{self.prefix}/{kind}/{urllib.parse.quote(path.lstrip('/'))}"

    def _get(self, url: str, headers: dict[str, str], body: memoryview | None = None
             ) -> tuple[int, http.client.HTTPMessage, bytes | int]:
        """GET with retries until ``retry_for`` has passed since the server stopped answering (one bound per
        outage, so once it is over every request fails after one try): (status, headers, body), the body
        read into ``body`` (its length returned) when given and the answer is a 206 of exactly that length."""
        deadline = (self._failing_since or time.monotonic()) + self.retry_for
        delay = 0.05
        while True:
            conn = None
            try:
                self.requests += 1
                conn = self._connection()
                conn.request("GET", url, headers={**self.headers, **headers})
                r = conn.getresponse()
                if body is not None and r.status == 206 and r.length == len(body):
                    got = 0
                    while got < len(body):
                        n = r.readinto(body[got:])
                        if not n:
                            raise http.client.IncompleteRead(b"", len(body) - got)
                        got += n
                    data: bytes | int = got
                else:
                    data = r.read()
                if r.will_close:
                    conn.close()
                else:
                    self._release(conn)
                self._failing_since = None  # it answered: any outage is over
                if r.status == 403:
                    raise self._refused()
                self.accepted = True
                return r.status, r.headers, data
            except (OSError, http.client.HTTPException) as exc:
                self.failures += 1
                self._failing_since = self._failing_since or time.monotonic()
                if conn is not None:
                    conn.close()
                if time.monotonic() + delay > deadline:
                    raise ServerAway(f"{self.base} did not answer: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _refused(self) -> Refused:
        """A 403: counted as a failure, logged when a server that answered starts refusing."""
        self.failures += 1
        if self.accepted:
            log.warning("%s refuses this mount now (HTTP 403): its secret or allowed networks changed", self.base)
        self.accepted = False
        return Refused(f"{self.base} refused the request (HTTP 403)")

    def _json(self, url: str) -> Any | None:
        status, _, data = self._get(url, {})
        if status == 404:
            return None
        if status != 200:
            raise ServerAway(f"{url}: HTTP {status}")
        return json.loads(data)

    def stat(self, path: str) -> dict[str, Any] | None:
        return self._json(self._url("stat", path))

    def list(self, path: str) -> list[dict[str, Any]] | None:
        listing = self._json(self._url("list", path))
        return None if listing is None else listing["entries"]

    def read_into(self, path: str, etag: str, start: int, buf: memoryview) -> None:
        """Fill ``buf`` with the bytes from ``start`` of the version ``etag``; Changed if the file is
        another version now."""
        status, headers, _ = self._get(self._url("data", path), {"Range": f"bytes={start}-{start + len(buf) - 1}",
                                                      "If-Range": etag}, buf)
        if status == 206 and headers.get("ETag") == etag and headers.get("Content-Length") == str(len(buf)):
            return
        if status in (200, 206, 404, 409, 416):
            raise Changed(path)
        raise ServerAway(f"read {path}: HTTP {status}")

    def fragment_size(self) -> int:
        return int(self._json(f"{self.prefix}/healthz")["fragment_size"])
