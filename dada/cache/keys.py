"""What names a cached answer: every input that changes it, and nothing else. The rule, written once.

A key (and an ETag) is the hash of

* the scan's files: their paths below the data root, sizes and mtimes, and the datasets the frames are
  read from (``Scan.identity``; a block's key only the files its frames come from). Pixel masks and
  geometry live in those files; the configuration's ``dataset_paths`` choose the datasets;
* the files the URL's parameters name (``usermask``): path below the data root, size and mtime;
* the route's name and version, the item (e.g. a frame number), the computational parameters in
  canonical form (the ETag also the presentation ones and the format);
* the FORMAT version of the bytes kept, below: bump it whenever what those bytes mean changes (their
  layout, a kernel's numbers), and every entry written before is a miss, never read as valid.

The package's release number is no part of any key: a release that changes no bytes keeps the caches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dada.sources.scan import FileStamp
from dada.stxm import reduction, wire

if TYPE_CHECKING:
    from dada.cluster.blocks import Block
    from dada.endpoint import Endpoint, Target
    from dada.sources.catalog import Catalog
    from dada.stxm.beam import BeamGeometry
    from dada.stxm.partials import Pass
    from dada.stxm.reduction import Spec

RESULT_FORMAT = 2  # a computed Result as dada.encoders.stored dumps it (2: header + raw arrays; no zip)
ANSWER_FORMAT = 1  # an encoded answer (dada.encoders) and the headers its content decides; names the ETag too
BLOCK_FORMAT = wire.FORMAT  # one channel's partial of one block: a record of dada.stxm.wire (its header says it too)
REDUCTION_FORMAT = reduction.FORMAT  # a block's polar reduction, and its per-geometry record (dada.stxm.reduction)


@dataclass(frozen=True)
class NamedFile:
    """A file a request's parameter names (``usermask=masks/beamstop.npy``), as it was when the request
    was planned: an input of the answer like the scan's own files."""

    param: str
    path: str  # as the URL gives it, below the data root
    stamp: FileStamp  # its real path below the root, size and mtime


def named_files(ep: Endpoint, catalog: Catalog, args: dict[str, Any]) -> tuple[NamedFile, ...]:
    """The files the request's parameters name (those declared ``names_file``); a stat each, no read."""
    return tuple(NamedFile(p.name, args[p.name], catalog.file_stamp(args[p.name], p.name))
                 for p in ep.model.params if p.names_file and args.get(p.name))


def _hash(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def files_identity(files: Sequence[NamedFile]) -> str:
    """The named files' part of a key: path below the root, size and mtime of each."""
    return ";".join(f"{f.param}={f.stamp.path}\0{f.stamp.size}\0{f.stamp.mtime_ns}" for f in files)


def result_key(ep: Endpoint, target: Target, args: dict[str, Any], files: Sequence[NamedFile],
               version: int = RESULT_FORMAT) -> str:
    """The result cache's key of what ``ep.compute`` returns (presentation parameters left out)."""
    route, params = ep.key_parts(args, presentation=False)
    return _hash("result", version, route, target.identity, files_identity(files), target.item, params)


def answer_tag(ep: Endpoint, target: Target, args: dict[str, Any], files: Sequence[NamedFile], fmt: str,
               version: int = ANSWER_FORMAT) -> str:
    """The ETag of an encoded answer, also its key in the encoded-answer cache. Parameters that only
    change a png leave other formats' tags alone."""
    exclude = () if fmt == "png" else ep.render_only
    route, params = ep.key_parts(args, exclude)
    key = _hash("answer", version, route, target.identity, files_identity(files), target.item, params, fmt)
    return f'"{key[:32]}"'


def block_key(block: Block, size: int, p: Pass, channel: int, version: int = BLOCK_FORMAT) -> str:
    """The key of one channel's partial over one block of frames: its files, the block grid, the pass's
    geometry (centre, calibration and every valid pixel: the user mask's contents) and the channel's own
    parameters."""
    return _hash("block", version, block.identity, size, block.index, p.geo.key, p.keys[channel])


def reduction_key(block: Block, size: int, geo: BeamGeometry, spec: Spec, version: int = REDUCTION_FORMAT) -> str:
    """The key of one block's polar reduction: its files, the block grid, the geometry and the reduction's grid."""
    return _hash("reduction", version, block.identity, size, block.index, geo.key, spec.query())


def reduction_geometry_key(geo: BeamGeometry, spec: Spec, version: int = REDUCTION_FORMAT) -> str:
    """The key of a reduction's per-geometry record (valid pixels and ranges per cell): no scan's files, only
    the geometry (which holds every valid pixel) and the grid."""
    return _hash("reduction-geometry", version, geo.key, spec.query())
