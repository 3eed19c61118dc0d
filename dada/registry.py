"""The routes' science: each module declares endpoints or STXM channels; these lists register them.

STXM channels of other packages join through the ``dada.channels`` entry point group (each entry
names a :class:`~dada.stxm.channel.Channel` subclass): installed where the front and the nodes run,
they appear in every route, ``/api``, the OpenAPI document and the GUI like the built-in ones.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from dada.endpoint import Endpoint
from dada.frames.listing import BROWSE, META
from dada.frames.routes import COMPOSITE, FRAME, SUM
from dada.stxm.azimuthal import Azimuthal
from dada.stxm.channel import Channel
from dada.stxm.contrast import Contrast
from dada.stxm.darkfield import Darkfield
from dada.stxm.dpc import Dpc
from dada.stxm.maxpixel import Maxpixel
from dada.stxm.radial import Radial
from dada.stxm.routes import StxmEndpoint
from dada.tomo.routes import CENTER_EP, SINOGRAM, SLICE

CHANNELS: tuple[Channel, ...] = (
    Darkfield(),
    Dpc(),
    Azimuthal(),
    Radial(),
    Maxpixel(),
    Contrast(),
    *(ep.load()() for ep in sorted(entry_points(group="dada.channels"), key=lambda e: e.name)),
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
