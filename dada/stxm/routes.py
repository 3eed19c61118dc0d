"""STXM routes: one endpoint per channel (/darkfield, /dpc, …) and /stxm for several in one pass.

Each endpoint's parameter model is put together from the channels'
declarations: selection + beam geometry + the channel's own parameters
(prefixed ``channel.`` in /stxm) + ``output`` + png rendering. Pixel maps are
built once per scan geometry and parameters and kept; whole-scan references
(dpc's median) are computed once per scan state and kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np

from dada.encoders.render import RENDER, RENDER_NAMES
from dada.endpoint import Context, Endpoint, Listener, Plan, Result, Target
from dada.errors import BadParameter
from dada.memo import Memo
from dada.params import Model, Param
from dada.selection import SELECTION, provenance, select, select_ranges
from dada.sources.catalog import Catalog
from dada.sources.scan import Scan
from dada.stxm.beam import GEOMETRY, BeamGeometry, geometry
from dada.stxm.channel import Channel, Partial
from dada.stxm.outputs import Outputs
from dada.stxm.partials import Pass
from dada.stxm.reduction import ReductionError
from dada.views import Overlay

log = logging.getLogger(__name__)

WHOLE_SCAN = Memo(64)
SNAP = Param("snap", "Move the radii to the polar reduction's grid (multiples of its radial bin, 1 px by default), "
             "so that the answer comes from the reduction instead of the frames; the attributes say what moved.",
             type="boolean", default=False)


def _prefixed(channel: Channel, p: Param) -> Param:
    return replace(p, name=f"{channel.name}.{p.name}")


class StxmEndpoint(Endpoint):
    """Serves one channel (``/darkfield``…) or, with ``multi``, any set of them (``/stxm``)."""

    cache_results = True
    maps = True

    def __init__(self, channels: tuple[Channel, ...], multi: bool) -> None:
        self.channels = {c.name: c for c in channels}
        self.multi = multi
        if multi:
            self.name, self.prefix = "stxm", "/stxm"
            self.summary = "Several STXM channels computed in one pass over the data (h5 holds them all)."
            self.version = "2"  # the route's own; the requested channels' versions enter its keys (key_part)
            own = [Param("channels", "Channels to compute in one pass.", choices=tuple(self.channels), many=True,
                         default=tuple(self.channels))]
            own += [_prefixed(c, p) for c in channels for p in c.params]
            outputs = tuple(f"{c.name}.{o}" for c in channels for o in c.outputs)
        else:
            (c,) = channels
            self.name, self.prefix, self.summary, self.version = c.name, f"/{c.name}", c.doc, c.version
            own = list(c.params) + ([SNAP] if c.radii else [])
            outputs = c.outputs
        output = Param("output", "Which output npy, tiff, csv and png carry (h5, mat and json carry all).",
                       choices=outputs, default=outputs[0], presentation=True)
        self.model = Model.of(SELECTION, GEOMETRY, own, [output], RENDER)
        self.render_only = RENDER_NAMES

    def overlays(self) -> list[dict[str, Any]]:
        centre = Overlay("centre", ("cx", "cy")).describe()
        return [centre, *(o.describe(f"{c.name}." if self.multi else "")
                          for c in self.channels.values() for o in c.overlays)]

    def key_parts(self, args: dict[str, Any], exclude: Iterable[str] = (), presentation: bool = True
                  ) -> tuple[str, str]:
        """In /stxm, only the requested channels' versions and parameters: adding a channel to dada leaves
        every other request's key (and cached answer) alone."""
        if not self.multi:
            return super().key_parts(args, exclude, presentation)
        names = set(args["channels"])
        skip = set(exclude) | {p.name for p in self.model.params
                               if "." in p.name and p.name.split(".", 1)[0] in self.channels
                               and p.name.split(".", 1)[0] not in names}
        versions = "+".join(f"{c.name}{c.version}" for c in self.requested(args))
        return f"{self.name}/{self.version}/{versions}", self.model.canonical(args, skip, presentation)

    # -- parameters per channel ------------------------------------------------------------------

    def requested(self, args: dict[str, Any]) -> list[Channel]:
        if not self.multi:
            return list(self.channels.values())
        return [self.channels[n] for n in args["channels"]]

    def centred(self, args: dict[str, Any]) -> bool:
        """Whether a requested channel's bins depend on the beam centre (else a scan need not record one)."""
        return any(c.centred for c in self.requested(args))

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
        vert, horz = select_ranges(scan, args)
        points = (len(vert), len(horz))
        geo = geometry(scan, args, catalog, self.centred(args))
        channel, sub = self._split_output(args)
        frames_read = points[0] * points[1]
        for c in self.requested(args):
            cargs = self.channel_args(c, args)
            self._checked(c, geo, cargs)
            if c.needs_whole_scan(cargs):
                frames_read += scan.nframes
        shape = channel.output_shape(self.channel_args(channel, args), points)[sub]
        nbytes = 0
        for c in self.requested(args):
            nbytes += sum(int(np.prod(s)) for s in c.output_shape(self.channel_args(c, args), points).values())
        # The plan's shape is the primary output's; its byte count covers every output (h5 holds them all).
        return Plan(shape, np.dtype("float64"), int(frames_read), extra_bytes=8 * nbytes - 8 * int(np.prod(shape)),
                    plane=True)

    def pass_for(self, scan: Scan, args: dict[str, Any], catalog: Catalog) -> Pass:
        """The fused pass this request's channels make (the front's request, or a node's block)."""
        geo = geometry(scan, args, catalog, self.centred(args))
        return Pass(geo, tuple((c, self.channel_args(c, args)) for c in self.requested(args)))

    def _context(self, scan: Scan, p: Pass, i: int, ctx: Context) -> Any:
        """A channel's whole-scan reference (dpc's median), from the partials of every frame; kept per scan state."""
        channel, cargs = p.channels[i]
        if not channel.needs_whole_scan(cargs):
            return None
        one = Pass(p.geo, (p.channels[i],))

        def whole() -> Any:
            m = ctx.partials(scan, np.arange(scan.nframes, dtype=np.int64), one)
            return channel.whole_scan(m[channel.name])

        return WHOLE_SCAN.get((scan.identity, p.geo.key, one.keys), whole)

    def _snapped(self, scan: Scan, args: dict[str, Any], ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
        """With ``snap``, the channel's radii moved to the nearest multiple of the reduction's radial bin (an
        unset outer radius from its default); and what moved, as [asked, used]."""
        if self.multi or not args.get("snap"):
            return args, {}
        (c,) = self.channels.values()
        geo = geometry(scan, args, ctx.catalog, self.centred(args))
        dr = ctx.reductions.dr if ctx.reductions is not None else 1
        moved: dict[str, Any] = {}
        out = dict(args)
        for name in c.radii:
            asked = args[name] if args[name] is not None else geo.r_inside()
            used = float(round(asked / dr) * dr)
            if used != args[name]:
                moved[name] = [args[name], used]
                out[name] = used
        self._checked(c, geo, out)
        return out, moved

    def _from_reduction(self, scan: Scan, frames: np.ndarray, p: Pass, ctx: Context) -> dict[str, Partial] | None:
        """A single channel's partial from the scan's polar reduction, when it holds these points and the
        channel's bins are unions of its cells; else None (the frames are read)."""
        if self.multi or ctx.reductions is None:
            return None
        (c, cargs), = p.channels
        if not c.radii:
            return None
        view = ctx.reductions.reduction(scan, frames, p.geo)
        try:
            m = None if view is None else c.reduced(view, p.geo, cargs)
        except ReductionError as exc:  # a block's cells, read when first needed, left the cache or are damaged
            log.warning("a kept reduction is unreadable (%s); answering from the frames", exc)
            return None
        return None if m is None else {c.name: m}

    def _whole_from_reduction(self, scan: Scan, p: Pass, ctx: Context) -> list[Any] | None:
        """Whole-scan references (dpc's median) from the reduction of every frame, when it answers."""
        contexts: list[Any] = []
        for i, (c, cargs) in enumerate(p.channels):
            if not c.needs_whole_scan(cargs):
                contexts.append(None)
                continue
            whole = self._from_reduction(scan, np.arange(scan.nframes, dtype=np.int64), Pass(p.geo, (p.channels[i],)),
                                         ctx)
            if whole is None:
                return None
            contexts.append(c.whole_scan(whole[c.name]))
        return contexts

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        scan = target.scan
        frames, vert, horz = select(scan, args)
        args, moved = self._snapped(scan, args, ctx)
        p = self.pass_for(scan, args, ctx.catalog)
        reduced = self._from_reduction(scan, frames.ravel(), p, ctx)
        contexts = self._whole_from_reduction(scan, p, ctx) if reduced is not None else None
        if contexts is None:
            reduced, contexts = None, [self._context(scan, p, i, ctx) for i in range(len(p.channels))]
        # pointwise channels are finalised block by block as they come (the selection's partials are never
        # held whole); the others' partials are gathered and finalised once
        outputs = Outputs(p, contexts, frames.shape)
        listener = None if ctx.progress is None else _MapListener(self, p, args, contexts, frames.shape, ctx.progress,
                                                                  outputs)
        if reduced is not None:  # every point at once: finalised below, as non-pointwise channels are
            partials, folded = reduced, {}
            if listener is not None:
                listener.start(1)
                listener.block(np.arange(frames.size), partials)
            present = next(iter(partials.values())).present
        else:
            written = frames[frames < scan.nframes]
            # a request of the whole scan's frames from /stxm keeps the scan's polar reduction too
            whole = self.multi and written.size >= scan.nframes and bool(
                np.bincount(written, minlength=scan.nframes).all())  # every frame: a count, not a sort
            partials = ctx.partials(scan, frames.ravel(), p, listener, outputs, reduce=whole)
            folded = outputs.finish()
            present = outputs.present if outputs.channels else next(iter(partials.values())).present
        arrays: dict[str, np.ndarray] = {}
        attrs: dict[str, Any] = {**provenance(scan, frames), "beam_center": [p.geo.cx, p.geo.cy],
                                 "vert": [vert.start, vert.stop, vert.step], "horz": [horz.start, horz.stop, horz.step],
                                 "frames_missing": int((~present).sum())}
        if moved:
            attrs["snapped"] = moved
        for (c, cargs), context in zip(p.channels, contexts, strict=True):
            # each channel's partial is let go once finalised: the front holds the answer, not the partials
            out = folded[c.name] if c.name in folded else c.finalize(partials.pop(c.name), p.geo, cargs, context)
            shapes = c.output_shape(cargs, frames.shape)
            prefix = f"{c.name}." if self.multi else ""
            arrays.update({f"{prefix}{k}": np.asarray(v, dtype=np.float64).reshape(shapes[k]) for k, v in out.items()})
            attrs[c.name] = {"version": c.version, **{q.name: cargs[q.name] for q in c.params if not q.presentation}}
        return Result(arrays, attrs, source="raw" if reduced is None else "reduction")

    def present(self, computed: Result, args: dict[str, Any]) -> Result:
        """The answer for this request's output and png settings, from arrays computed once."""
        channel, sub = self._split_output(args)
        prefix = f"{channel.name}." if self.multi else ""
        primary = prefix + sub
        arrays = {primary: computed.arrays[primary], **{k: v for k, v in computed.arrays.items() if k != primary}}
        own = {k[len(prefix):]: v for k, v in computed.arrays.items() if k.startswith(prefix)}
        cargs = self.channel_args(channel, args)
        return Result(arrays, computed.attrs, plane=channel.plane(own, sub, cargs),
                      drawing=channel.drawing(own, sub, cargs), unit=channel.unit(sub, cargs), source=computed.source)


class _MapListener:
    """Turns each block's partials into the primary output's values at its map cells, for the progress stream
    (a pointwise channel's values come from ``outputs``, which finalised them as they came)."""

    def __init__(self, ep: StxmEndpoint, p: Pass, args: dict[str, Any], contexts: list[Any],
                 shape: tuple[int, int], publish: Listener, outputs: Outputs) -> None:
        self.channel, self.sub = ep._split_output(args)
        self.index = [c.name for c, _ in p.channels].index(self.channel.name)
        self.p, self.args, self.context, self.shape, self.publish = p, args, contexts[self.index], shape, publish
        self.outputs = outputs
        self.done = self.total = 0

    def cancelled(self) -> bool:
        return self.publish.cancelled()

    def start(self, total: int) -> None:
        self.total = total
        self.publish({"done": 0, "total": total, "shape": list(self.shape)})

    def block(self, positions: np.ndarray, partials: dict[str, Partial]) -> None:
        self.done += 1
        event: dict[str, Any] = {"done": self.done, "total": self.total, "cells": positions.tolist()}
        cargs = self.p.channels[self.index][1]
        if self.channel.name in partials:
            out = self.channel.finalize(partials[self.channel.name], self.p.geo, cargs, self.context)
        else:
            out = self.outputs.at(self.channel.name, positions)
        shapes = self.channel.output_shape(cargs, (1, positions.size))
        view = self.channel.plane({k: np.asarray(v, dtype=np.float64).reshape(shapes[k]) for k, v in out.items()},
                                  self.sub, cargs)
        if view is not None and view.shape == (1, positions.size):  # not for outputs without a map (reduce=sum)
            event["values"] = [None if not np.isfinite(v) else float(v) for v in view[0]]
        self.publish(event)
