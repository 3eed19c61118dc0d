"""The client's side of the wire: a persistent connection pool, bounded retries, typed answers."""

from __future__ import annotations

import json
import time
import urllib.parse
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError


class ServerAway(Exception):
    """The server did not answer within the retry bound."""


class Changed(Exception):
    """The file is not the version asked for any more (its ETag moved)."""


class Remote:
    def __init__(self, url: str, retry_for: float = 3.0, timeout: float = 10.0, pool: int = 32) -> None:
        self.base = url.rstrip("/")
        self.retry_for = retry_for
        self.http = urllib3.PoolManager(
            num_pools=4, maxsize=pool, block=False, retries=False,
            timeout=urllib3.Timeout(connect=min(1.0, retry_for), read=timeout),
        )
        self.requests = 0
        self.failures = 0

    def _get(self, kind: str, path: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        url = f"{self.base}/{kind}/{urllib.parse.quote(path.lstrip('/'))}"
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                self.requests += 1
                return self.http.request("GET", url, headers=headers, preload_content=True)
            except HTTPError as exc:
                self.failures += 1
                if time.monotonic() + delay > deadline:
                    raise ServerAway(f"{self.base} did not answer: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def stat(self, path: str) -> dict[str, Any] | None:
        r = self._get("stat", path)
        if r.status == 404:
            return None
        if r.status != 200:
            raise ServerAway(f"stat {path}: HTTP {r.status}")
        return json.loads(r.data)

    def list(self, path: str) -> list[dict[str, Any]] | None:
        r = self._get("list", path)
        if r.status == 404:
            return None
        if r.status != 200:
            raise ServerAway(f"list {path}: HTTP {r.status}")
        return json.loads(r.data)["entries"]

    def read(self, path: str, etag: str, start: int, stop: int) -> bytes:
        """Bytes [start, stop) of the version ``etag``; Changed if the file is another version now."""
        r = self._get("data", path, {"Range": f"bytes={start}-{stop - 1}", "If-Range": etag})
        if r.status == 206 and r.headers.get("ETag") == etag:
            return r.data
        if r.status in (200, 206, 404, 409, 416):
            raise Changed(path)
        raise ServerAway(f"read {path}: HTTP {r.status}")

    def fragment_size(self) -> int:
        r = self.http.request("GET", f"{self.base}/healthz")
        return int(json.loads(r.data)["fragment_size"])
