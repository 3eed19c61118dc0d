"""When a kept answer may be served again, and what HTTP caches are told: the validator policy.

Framework-free: the HTTP adapter (``dada.server.routing``) hands over the URL and gets back bytes and
header values. Keys and ETags are ``dada.cache.keys``'s; this module decides

* the hot path: an encoded answer of a complete scan, by URL, served from memory before any parsing
  while the URL still names the same scan files (a retargeted symlink, a new ``X_master.h5`` beside
  ``X.h5`` or a folder gaining a scan: no longer), those files are unchanged and the files its
  parameters name are too. Checked by stats, no HDF5 opened, at most every ``recheck_seconds`` as
  the catalog checks scans (``Catalog.fresh``).
* ``Cache-Control``: complete scans ``max-age=FRESH_SECONDS`` (a browser asks again after that, and
  the ETag makes the answer a 304 if nothing changed), scans still being written ``no-cache``, folder
  listings ``no-store``; an answer that needed a token is ``private``, so no shared cache keeps it.
"""

from __future__ import annotations

import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from dada.cache.keys import NamedFile
from dada.cache.memory import MemoryCache, nbytes
from dada.errors import DadaError
from dada.sources.catalog import Catalog
from dada.sources.scan import Scan

FRESH_SECONDS = 5  # how long a browser or proxy may reuse a complete scan's answer without asking
HOT_URLS = 4096


def cache_control(complete: bool, folder: bool, private: bool) -> str:
    """The ``Cache-Control`` of an answer (see the module's docstring for why)."""
    if folder:  # a listing changes with no scan to name it: never kept
        return "no-store"
    if private:
        return f"private, max-age={FRESH_SECONDS}" if complete else "private, no-cache"
    return f"public, max-age={FRESH_SECONDS}" if complete else "no-cache"


def hot_key(path: str, query: Iterable[tuple[str, str]], accept: str) -> str:
    """What names an encoded answer before any parsing: the path, the query (the caller leaves out any
    token: credentials are no part of an answer's name) and Accept."""
    return f"{path}?{urllib.parse.urlencode(list(query))}|{accept}"


@dataclass
class Hot:
    """The last answer to one URL: what it was computed from, its ETag and headers."""

    path: str  # the scan path the URL names
    scan: Scan
    named: tuple[NamedFile, ...]
    tag: str
    headers: dict[str, str]
    checked: float  # time.monotonic() when the URL was last found to name the same inputs


class HotAnswers:
    """Encoded answers of complete scans by ETag (bounded bytes), and by URL the last one's inputs.

    Used from the event loop only: every check is a few stats."""

    def __init__(self, catalog: Catalog, max_bytes: int, urls: int = HOT_URLS) -> None:
        self.catalog = catalog
        self.answers = MemoryCache(max_bytes)
        self.urls: OrderedDict[str, Hot] = OrderedDict()
        self.max_urls = urls

    def get(self, key: str) -> Hot | None:
        """The last answer to this URL if it is still the answer: same scan files, same named files."""
        hot = self.urls.get(key)
        if hot is None or not self.current(hot):
            return None
        return hot

    def current(self, hot: Hot) -> bool:
        if not self.catalog.fresh(hot.scan):
            return False
        now = time.monotonic()
        if now - hot.checked < self.catalog.recheck:
            return True
        if not self.catalog.names(hot.path, hot.scan):
            return False
        for f in hot.named:
            try:
                if self.catalog.file_stamp(f.path, f.param) != f.stamp:
                    return False
            except DadaError:
                return False
        hot.checked = now
        return True

    def encoded(self, tag: str) -> tuple[dict[str, str], memoryview] | None:
        """An encoded answer by its ETag: the headers its content decides, and the body."""
        kept = self.answers.get(tag)
        return None if kept is None else (kept[0], memoryview(kept[1]))

    def keep(self, key: str, hot: Hot, more: dict[str, str], body: bytes) -> None:
        self.answers.put(hot.tag, (more, body), size=nbytes(body))  # the body as sent: no copy
        self.arm(key, hot)

    def arm(self, key: str, hot: Hot) -> None:
        """Serve this URL from memory again (its answer is kept under ``hot.tag``)."""
        self.urls[key] = hot
        self.urls.move_to_end(key)
        while len(self.urls) > self.max_urls:
            self.urls.popitem(last=False)
