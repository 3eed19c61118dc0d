"""STXM routes: one endpoint per channel (/darkfield, /dpc, …) and /stxm for several in one pass.

Each endpoint's parameter model is put together from the channels'
declarations: selection + beam geometry + the channel's own parameters
(prefixed ``channel.`` in /stxm) + ``output`` + png rendering. Pixel maps are
built once per scan geometry and parameters and kept; whole-scan references
(dpc's median) are computed once per scan state and kept.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import Any

import numpy as np

from dada.encoders.render import RENDER, RENDER_NAMES
from dada.endpoint import Endpoint, Plan, Result, Target
from dada.errors import BadParameter
from dada.params import Model, Param
from dada.selection import SELECTION, provenance, select
from dada.sources.catalog import Catalog
from dada.stxm.beam import GEOMETRY, BeamGeometry, geometry
from dada.stxm.channel import Channel, Moments
from dada.stxm.engine import Engine
from dada.stxm.pixelmaps import PixelMaps, fuse

_engine: Engine | None = None
_engine_lock = threading.Lock()


def engine() -> Engine:
    """The process's engine: one worker thread per core, shared by all requests."""
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = Engine(os.cpu_count() or 2)
        return _engine


from dada.memo import Memo  # noqa: E402

MAPS = Memo(16)
WHOLE_SCAN = Memo(64)


def _prefixed(channel: Channel, p: Param) -> Param:
    return replace(p, name=f"{channel.name}.{p.name}")


class StxmEndpoint(Endpoint):
    """Serves one channel (``/darkfield``…) or, with ``multi``, any set of them (``/stxm``)."""

    def __init__(self, channels: tuple[Channel, ...], multi: bool) -> None:
        self.channels = {c.name: c for c in channels}
        self.multi = multi
        if multi:
            self.name, self.prefix = "stxm", "/stxm"
            self.summary = "Several STXM channels computed in one pass over the data (h5 holds them all)."
            self.version = "+".join(f"{c.name}{c.version}" for c in channels)
            own = [Param("channels", "Channels to compute in one pass.", choices=tuple(self.channels), many=True,
                         default=tuple(self.channels))]
            own += [_prefixed(c, p) for c in channels for p in c.params]
            outputs = tuple(f"{c.name}.{o}" for c in channels for o in c.outputs)
        else:
            (c,) = channels
            self.name, self.prefix, self.summary, self.version = c.name, f"/{c.name}", c.doc, c.version
            own = list(c.params)
            outputs = c.outputs
        output = Param("output", "Which output npy, tiff, csv and png carry (h5, mat and json carry all).",
                       choices=outputs, default=outputs[0])
        self.model = Model.of(SELECTION, GEOMETRY, own, [output], RENDER)
        self.render_only = RENDER_NAMES

    # -- parameters per channel ------------------------------------------------------------------

    def requested(self, args: dict[str, Any]) -> list[Channel]:
        if not self.multi:
            return list(self.channels.values())
        return [self.channels[n] for n in args["channels"]]

    def channel_args(self, channel: Channel, args: dict[str, Any]) -> dict[str, Any]:
        if not self.multi:
            return args
        pre = f"{channel.name}."
        own = {k[len(pre):]: v for k, v in args.items() if k.startswith(pre)}
        return {**args, **own}

    def _split_output(self, args: dict[str, Any]) -> tuple[Channel, str]:
        out = args["output"]
        if not self.multi:
            return next(iter(self.channels.values())), out
        name, _, sub = out.partition(".")
        if name not in args["channels"]:
            raise BadParameter("output", f"{out} belongs to a channel not requested",
                               f"an output of {', '.join(args['channels'])}")
        return self.channels[name], sub

    def _checked(self, channel: Channel, geo: BeamGeometry, cargs: dict[str, Any]) -> None:
        try:
            channel.check(geo, cargs)
        except BadParameter as exc:
            if self.multi and exc.details.get("parameter") in {p.name for p in channel.params}:
                raise BadParameter(f"{channel.name}.{exc.details['parameter']}",
                                   exc.message.split(": ", 1)[-1], exc.details.get("allowed")) from None
            raise

    # -- plan and run ------------------------------------------------------------------------------

    def plan(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Plan:
        scan = target.scan
        frames, _, _ = select(scan, args)
        geo = geometry(scan, args, catalog)
        channel, sub = self._split_output(args)
        frames_read = frames.size
        for c in self.requested(args):
            cargs = self.channel_args(c, args)
            self._checked(c, geo, cargs)
            if c.needs_whole_scan(cargs):
                frames_read += scan.nframes
        shape = channel.output_shape(self.channel_args(channel, args), frames.shape)[sub]
        nbytes = 0
        for c in self.requested(args):
            nbytes += sum(int(np.prod(s)) for s in c.output_shape(self.channel_args(c, args), frames.shape).values())
        # The plan's shape is the primary output's; its byte count covers every output (h5 holds them all).
        return Plan(shape, np.dtype("float64"), int(frames_read), extra_bytes=8 * nbytes - 8 * int(np.prod(shape)),
                    plane=True)

    def _maps(self, scan, geo: BeamGeometry, channels: list[Channel], args: dict[str, Any]) -> PixelMaps:
        key = (scan.identity, geo.cx, geo.cy, args["usermask"],
               tuple((c.name, c.version, self.model.canonical(self.channel_args(c, args))) for c in channels))
        return MAPS.get(key, lambda: fuse([c.bins(geo, self.channel_args(c, args)) for c in channels], geo))

    def _context(self, scan, geo: BeamGeometry, channel: Channel, cargs: dict[str, Any]) -> Any:
        if not channel.needs_whole_scan(cargs):
            return None
        key = (scan.identity, channel.name, channel.version, geo.cx, geo.cy, cargs["usermask"],
               self.model.canonical(cargs))

        def whole() -> Any:
            maps = fuse([channel.bins(geo, cargs)], geo)
            return channel.whole_scan(engine().run(scan, np.arange(scan.nframes), maps, geo))

        return WHOLE_SCAN.get(key, whole)

    def run(self, target: Target, args: dict[str, Any], catalog: Catalog) -> Result:
        scan = target.scan
        frames, vert, horz = select(scan, args)
        geo = geometry(scan, args, catalog)
        channels = self.requested(args)
        maps = self._maps(scan, geo, channels, args)
        moments: Moments = engine().run(scan, frames.ravel(), maps, geo)
        arrays: dict[str, np.ndarray] = {}
        attrs: dict[str, Any] = {**provenance(scan, frames), "beam_center": [geo.cx, geo.cy],
                                 "vert": [vert.start, vert.stop, vert.step], "horz": [horz.start, horz.stop, horz.step],
                                 "frames_missing": int((~moments.present).sum())}
        per_channel: dict[str, dict[str, np.ndarray]] = {}
        for i, c in enumerate(channels):
            cargs = self.channel_args(c, args)
            out = c.finalize(moments.slice(maps.offsets[i], maps.offsets[i + 1]), geo, cargs,
                             self._context(scan, geo, c, cargs))
            shapes = c.output_shape(cargs, frames.shape)
            out = {k: np.asarray(v, dtype=np.float64).reshape(shapes[k]) for k, v in out.items()}
            per_channel[c.name] = out
            prefix = f"{c.name}." if self.multi else ""
            arrays.update({f"{prefix}{k}": v for k, v in out.items()})
            attrs[c.name] = {"version": c.version, **{p.name: cargs[p.name] for p in c.params}}
        channel, sub = self._split_output(args)
        primary = f"{channel.name}.{sub}" if self.multi else sub
        arrays = {primary: arrays[primary], **{k: v for k, v in arrays.items() if k != primary}}
        result = Result(arrays, attrs)
        cargs = self.channel_args(channel, args)
        plane = channel.plane(per_channel[channel.name], sub, cargs)
        result.plane = plane
        result.drawing = channel.drawing(per_channel[channel.name], sub, cargs)
        return result
