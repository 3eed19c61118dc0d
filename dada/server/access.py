"""Who may read what: bearer tokens granting subtrees of the data root.

Off unless the configuration names tokens. A token is configured by the SHA-256 of its text only
(``dada token`` makes one), so the configuration never holds it in clear; a request shows it as
``Authorization: Bearer …`` or ``?token=…`` (browsers' EventSource, Matlab one-liners). It is never
logged, never part of a cache key or ETag, and taken out of the query before parsing.

Without a valid token every data route answers 401; outside the token's subtrees 403, and listings
leave out what the token cannot reach, as if it did not exist. The GUI's static files, ``/api`` and
``/healthz`` stay open: they describe the service, not the data.

The nodes' own door (their front's shared secret) is ``dada.nodeguard``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDict

from dada.errors import Forbidden, Unauthorized

TOKEN_PARAM = "token"


def digest(token: str) -> str:
    """What the configuration holds for a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """One configured token: a name for logs and progress streams, and the subtrees it reads."""

    name: str
    sha256: str
    paths: tuple[str, ...]  # below the data root, "" for all of it

    def covers(self, path: str) -> bool:
        """Whether ``path`` (a scan, file or folder below the data root) lies in one of the subtrees."""
        path = path.strip("/")
        return any(p == "" or path == p or path.startswith(p + "/") for p in self.paths)

    def leads_to(self, folder: str) -> bool:
        """Whether listing ``folder`` can show something the grant covers (a parent of a subtree)."""
        folder = folder.strip("/")
        return self.covers(folder) or any(folder == "" or p.startswith(folder + "/") for p in self.paths)


class Access:
    def __init__(self, tokens: Iterable[Mapping[str, Any]]) -> None:
        self.grants: dict[str, Grant] = {}
        for t in tokens:
            unknown = set(t) - {"name", "sha256", "paths"}
            if unknown or "sha256" not in t or "paths" not in t:
                raise ValueError(f"a [[tokens]] entry has name, sha256 and paths; got {sorted(t)}")
            g = Grant(str(t.get("name", t["sha256"][:8])), str(t["sha256"]).lower(),
                      tuple(str(p).strip("/") for p in t["paths"]))
            if len(g.sha256) != 64 or any(c not in "0123456789abcdef" for c in g.sha256):
                raise ValueError(f"token {g.name!r}: sha256 must be 64 hex digits (dada token makes one)")
            self.grants[g.sha256] = g

    @property
    def enabled(self) -> bool:
        return bool(self.grants)

    def grant(self, request: web.Request) -> Grant | None:
        """The request's grant; None when access control is off. 401 without a valid token."""
        if not self.enabled:
            return None
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else request.query.get(TOKEN_PARAM, "")
        if not token:
            raise Unauthorized("this server needs a token: Authorization: Bearer <token>, or ?token=<token>")
        wanted = digest(token)
        for known, g in self.grants.items():
            if hmac.compare_digest(known, wanted):
                return g
        raise Unauthorized("the token is not valid here")

    def check(self, grant: Grant | None, path: str, what: str = "scan") -> None:
        """403 unless the grant reads ``path``."""
        if grant is not None and not grant.covers(path):
            raise Forbidden(f"this token does not grant the {what} at {path.strip('/')!r}")

    def check_folder(self, grant: Grant | None, folder: str) -> None:
        if grant is not None and not grant.leads_to(folder):
            raise Forbidden(f"this token does not grant the folder {folder.strip('/')!r}")

    @staticmethod
    def visible(grant: Grant | None, listing: dict[str, Any]) -> dict[str, Any]:
        """A /browse listing with what the grant cannot reach left out."""
        if grant is None:
            return listing
        base = listing["path"]
        join = (lambda n: f"{base}/{n}") if base else (lambda n: n)
        return {**listing, "folders": [f for f in listing["folders"] if grant.leads_to(join(f))],
                "scans": [s for s in listing["scans"] if grant.covers(s["path"])]}


def without_token(query: Mapping[str, str]) -> Mapping[str, str]:
    """The query as the routes see it: the token is credentials, not a parameter."""
    if TOKEN_PARAM not in query:
        return query
    return MultiDict((k, v) for k, v in query.items() if k != TOKEN_PARAM)
