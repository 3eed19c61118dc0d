"""What a route declares, free of any web framework.

An :class:`Endpoint` names its URL prefix, its parameter :class:`Model`, the
formats it can produce and, before any data is read, what its answer will be
(:meth:`Endpoint.plan`: shape, dtype, frames to read) so limits are checked
up front. :meth:`Endpoint.run` then computes a :class:`Result`. The server
(``dada.server``) turns any endpoint into a route; ``dada.server.openapi``
and ``/api`` describe them from the same declarations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from dada.params import Model, Param
from dada.sources.catalog import Catalog
from dada.sources.scan import Scan
from dada.views import Drawing

if TYPE_CHECKING:
    from dada.stxm.partials import PartialSource, ReductionSource

ARRAY_FORMATS = ("npy", "png", "tiff", "json", "csv", "h5", "mat")
WORK_PER_OUTPUT = 4  # copies of the answer a computation and its encoding hold at once, at most
PLANE_FORMATS = ("png", "csv")  # need a 2-D answer


@dataclass(frozen=True)
class Plan:
    """What an answer will be, known before reading: checked against the limits."""

    shape: tuple[int, ...] = ()  # of the primary array
    dtype: np.dtype = field(default_factory=lambda: np.dtype("float64"))
    frames: int = 0  # frames the answer reads
    extra_bytes: int = 0  # of the other arrays (formats like h5 carry them all)
    plane: bool = False  # png/csv have a 2-D view even though the primary array is not 2-D
    work: int = 0  # bytes the computation needs at its peak, when more than WORK_PER_OUTPUT × the answer

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize + self.extra_bytes

    @property
    def work_bytes(self) -> int:
        """What the request holds of the server's working-memory budget while it computes and encodes."""
        return max(self.work, WORK_PER_OUTPUT * self.nbytes)

    @property
    def has_plane(self) -> bool:
        return self.plane or len(self.shape) == 2


@dataclass
class Result:
    """Named arrays (the first is the primary one) plus attributes, or a JSON document."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    document: Any = None  # for JSON-only endpoints
    invalid: np.ndarray | None = None  # pixels a rendering must not show (masked, saturated)
    drawing: Drawing | None = None  # an analysis's own png, when a colormap will not do
    plane: np.ndarray | None = None  # the 2-D view png and csv show, when it is not the primary array
    unit: str | None = None  # of the values the 2-D view shows, for the png's legend ("" dimensionless, None unknown)
    source: str | None = None  # which data answered (STXM: "reduction" or "raw"), for the X-Dada-Source header

    @property
    def primary(self) -> np.ndarray:
        return next(iter(self.arrays.values()))

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays (what keeping it in memory costs)."""
        return sum(a.nbytes for a in self.arrays.values())

    @property
    def view(self) -> np.ndarray:
        """What 2-D formats (png, csv) show."""
        return self.primary if self.plane is None else self.plane


class Listener(Protocol):
    """A request's progress stream (``dada.server.progress``): events go out, a cancel comes back."""

    def __call__(self, event: dict[str, Any]) -> None: ...

    def cancelled(self) -> bool: ...


class Reduction(Protocol):
    """A reduction over frames that splits over runs of frames: ``partial`` of some frames (in the
    order given) anywhere — this process or a node holding them — and the parts put together once at the
    front (``dada.frames.routes``: /sum adds images, /composite places tiles)."""

    name: str
    model: Model

    def selected(self, scan: Scan, args: dict[str, Any]) -> np.ndarray:
        """The frame numbers the request reduces, flat, in the order the answer lays them out."""

    def partial(self, scan: Scan, frames: np.ndarray, args: dict[str, Any]) -> np.ndarray: ...


class FrameSource(Protocol):
    """Computes a reduction's parts for frames (flat): [(positions into ``frames``, partial array)]."""

    def __call__(self, scan: Scan, frames: np.ndarray, ep: Reduction, args: dict[str, Any]
                 ) -> list[tuple[np.ndarray, np.ndarray]]: ...


def local_parts(scan: Scan, frames: np.ndarray, ep: Reduction, args: dict[str, Any]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A reduction computed in this process, as one part."""
    return [(np.arange(frames.size), ep.partial(scan, frames, args))]


@dataclass(frozen=True)
class Context:
    """What a computation may use besides its target: the catalog, where STXM partials and frame
    reductions come from (this process's engine, or the cluster's nodes), the request's progress
    stream, if anyone listens, and the kept polar reductions of scans."""

    catalog: Catalog
    partials: PartialSource
    progress: Listener | None = None
    frames: FrameSource = local_parts
    reductions: ReductionSource | None = None  # scans' polar reductions, where some are kept


@dataclass(frozen=True)
class Target:
    """The object an endpoint acts on, resolved from the URL path."""

    scan: Scan | None = None
    folder: str | None = None
    item: int | None = None  # trailing path segment, e.g. a frame number
    tomo: Any = None  # a TomoScan for the tomography routes

    @property
    def identity(self) -> str:
        source = self.scan if self.scan is not None else self.tomo
        return source.identity if source is not None else ""

    @property
    def complete(self) -> bool:
        source = self.scan if self.scan is not None else self.tomo
        return source is None or source.complete

    @property
    def name(self) -> str | None:
        source = self.scan if self.scan is not None else self.tomo
        return None if source is None else source.name


class Endpoint:
    """Base class; subclasses set the class attributes and implement plan/run."""

    name: ClassVar[str]
    prefix: ClassVar[str]  # URL prefix, e.g. "/frame"
    summary: ClassVar[str]
    version: ClassVar[str] = "1"  # enters cache keys and ETags: bump when numbers change
    target: ClassVar[str] = "scan"  # what the path names: "scan", "tomo" (a tomography file) or "folder"
    formats: ClassVar[tuple[str, ...]] = ARRAY_FORMATS
    model: ClassVar[Model]
    item: ClassVar[Param | None] = None  # a trailing path segment after the scan
    item_optional: ClassVar[bool] = False
    render_only: ClassVar[frozenset[str]] = frozenset()  # parameters that only change png output
    cache_results: ClassVar[bool] = False  # keep computed arrays in the result cache (worth it: costly to compute)
    maps: ClassVar[bool] = False  # its images are maps over the scan's points (the GUI's live maps, click-through)

    def resolve(self, catalog: Catalog, path: str, item: int | None) -> Target:
        """What the URL path names; runs in a worker thread (it may open files)."""
        if self.target == "folder":
            return Target(folder=path)
        return Target(scan=catalog.scan(path), item=item)

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        """Validate against the target and say what the answer will be, reading no frame."""
        return Plan()

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        """The arrays and attributes that presentation parameters do not change (what the cache keeps)."""
        raise NotImplementedError

    def present(self, computed: Result, args: dict[str, Any]) -> Result:
        """The answer for this request's presentation parameters (output, png settings)."""
        return computed

    def run(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        return self.present(self.compute(target, args, ctx), args)

    def key_parts(self, args: dict[str, Any], exclude: Iterable[str] = (), presentation: bool = True
                  ) -> tuple[str, str]:
        """What of this route and a request's arguments names its answer: the route's name and version, and
        the canonical arguments (``exclude``/``presentation`` as ``Model.canonical``)."""
        return f"{self.name}/{self.version}", self.model.canonical(args, exclude, presentation)

    def path_template(self) -> str:
        if self.target == "folder":
            return f"{self.prefix}/{{folder}}"
        tail = f"/{{{self.item.name}}}" if self.item is not None else ""
        return f"{self.prefix}/{{scan}}{tail}.{{fmt}}"

    def overlays(self) -> list[dict[str, Any]]:
        """Shapes of this route's parameters the GUI draws on detector frames (see ``dada.views.Overlay``)."""
        return []

    def describe(self) -> dict[str, Any]:
        """This endpoint as listed in /api (and read by the GUI, which knows no route's parameters)."""
        return {
            "name": self.name,
            "path": self.path_template(),
            "summary": self.summary,
            "version": self.version,
            "target": self.target,
            "maps": self.maps,
            "formats": list(self.formats),
            "item": None if self.item is None else {**self.item.schema(), "name": self.item.name,
                                                    "optional": self.item_optional},
            "parameters": self.model.schemas(),
            "overlays": self.overlays(),
        }
