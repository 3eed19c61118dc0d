"""The routes' science: each module declares endpoints; this list registers them."""

from __future__ import annotations

from dada.analysis.frames import COMPOSITE, FRAME, SUM
from dada.analysis.listing import BROWSE, META
from dada.endpoint import Endpoint

ENDPOINTS: tuple[Endpoint, ...] = (
    BROWSE,
    META,
    FRAME,
    SUM,
    COMPOSITE,
)
