"""The door of an internal service: a node answers its front only, a dadafs server its mounts only.

A request passes with the shared secret in the service's header (``X-Dada-Node-Secret`` for nodes), or
when it comes from a configured network; ``/healthz`` stays open. Free of any web framework: the servers'
middlewares hand over the request's path, headers and peer address.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dada.errors import Forbidden

NODE_SECRET_HEADER = "X-Dada-Node-Secret"


@dataclass(frozen=True)
class NodeGuard:
    """A shared secret in ``header``, or an address in the configured networks."""

    secret: str | None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    header: str = NODE_SECRET_HEADER

    @classmethod
    def of(cls, secret: str | None, networks: Iterable[str], header: str = NODE_SECRET_HEADER) -> NodeGuard:
        return cls(secret or None, tuple(ipaddress.ip_network(n, strict=False) for n in networks), header)

    @property
    def enabled(self) -> bool:
        return self.secret is not None or bool(self.networks)

    def check(self, path: str, headers: Mapping[str, str], remote: str | None) -> None:
        """403 unless the request carries the secret or comes from an allowed network."""
        if not self.enabled or path == "/healthz":
            return
        if self.secret is not None and hmac.compare_digest(headers.get(self.header, ""), self.secret):
            return
        if self.networks and remote:
            try:
                addr = ipaddress.ip_address(remote)
            except ValueError:
                addr = None
            if addr is not None and any(addr in n for n in self.networks):
                return
        raise Forbidden("this is an analysis node: it answers its front only")
