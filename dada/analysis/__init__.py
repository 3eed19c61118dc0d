"""The routes' science: each module declares endpoints or STXM channels; these lists register them."""

from __future__ import annotations

from dada.analysis.azimuthal import Azimuthal
from dada.analysis.darkfield import Darkfield
from dada.analysis.dpc import Dpc
from dada.analysis.engine import Channel
from dada.analysis.frames import COMPOSITE, FRAME, SUM
from dada.analysis.listing import BROWSE, META
from dada.analysis.radial import Radial
from dada.analysis.stxm import StxmEndpoint
from dada.analysis.tomo import CENTER_EP, SINOGRAM, SLICE
from dada.endpoint import Endpoint

CHANNELS: tuple[Channel, ...] = (
    Darkfield(),
    Dpc(),
    Azimuthal(),
    Radial(),
)

ENDPOINTS: tuple[Endpoint, ...] = (
    BROWSE,
    META,
    FRAME,
    SUM,
    COMPOSITE,
    *(StxmEndpoint((c,), multi=False) for c in CHANNELS),
    StxmEndpoint(CHANNELS, multi=True),
    SINOGRAM,
    SLICE,
    CENTER_EP,
)
