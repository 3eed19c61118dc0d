"""The routes' science: each module declares endpoints or STXM channels; these lists register them."""

from __future__ import annotations

from dada.endpoint import Endpoint
from dada.frames.listing import BROWSE, META
from dada.frames.routes import COMPOSITE, FRAME, SUM
from dada.stxm.azimuthal import Azimuthal
from dada.stxm.channel import Channel
from dada.stxm.darkfield import Darkfield
from dada.stxm.dpc import Dpc
from dada.stxm.radial import Radial
from dada.stxm.routes import StxmEndpoint
from dada.tomo.routes import CENTER_EP, SINOGRAM, SLICE

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
