"""Paths from URLs, confined to a root: checked segment by segment, then again after symlinks.

Used by the daemon's catalog and by the dadafs server, so both refuse the same things.
"""

from __future__ import annotations

import os
import re

BAD_SEGMENT = re.compile(r"[\\\x00-\x1f]")


def segments(urlpath: str) -> list[str] | None:
    """The path's segments, or None if any is empty, '.', '..', '~…' or holds a backslash/control byte."""
    stripped = urlpath.strip("/")
    parts = stripped.split("/") if stripped else []
    for p in parts:
        if p in ("", ".", "..") or BAD_SEGMENT.search(p) or p.startswith("~"):
            return None
    return parts


def inside(root: str, path: str) -> str | None:
    """The real path of ``path`` if it lies within the (real) ``root``, else None."""
    real = os.path.realpath(path)
    return real if real == root or real.startswith(root + os.sep) else None


def resolve(root: str, urlpath: str) -> str | None:
    """The real path below ``root`` that a URL path names, or None if it would leave the root."""
    parts = segments(urlpath)
    if parts is None:
        return None
    return inside(root, os.path.join(root, *parts))
