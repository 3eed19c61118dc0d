"""A scan's analyses as an HDF5 file: ``{scan}.dada``, a NeXus tree h5web plots with axes and titles.

The file lives in memory. Its root (``NXroot``, ``default`` = darkfield) holds one ``NXdata`` group
per STXM channel (``/darkfield``, ``/dpc``, ``/azimuthal``, ``/radial``); a group is computed the
first time a request touches it, by the channel's own endpoint (its plan, limits, result cache and
``present``), so each dataset equals that route's ``.npy`` answer for the same parameters
(``/darkfield/{scan}.npy?output=transmission`` = ``/darkfield/transmission``).

Parameters: the channel's defaults, or any of its parameters given in the h5grove query next to
``file`` and ``path`` (e.g. ``&rmin=4&cx=30``); each group keeps them as attributes. Maps are over
the scan's points: axes ``vert`` (scan rows) and ``horz`` (scan columns), in points.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from dada.cache.keys import named_files
from dada.endpoint import Context, Target
from dada.errors import BadParameter
from dada.memo import Memo
from dada.registry import ENDPOINTS
from dada.server.routing import Dispatcher
from dada.stxm.routes import StxmEndpoint

SUFFIX = ".dada"
CHANNELS: dict[str, StxmEndpoint] = {ep.name: ep for ep in ENDPOINTS if isinstance(ep, StxmEndpoint) and not ep.multi}
DEFAULT = "darkfield"
_names = itertools.count()


class Analyses:
    """One scan's virtual file for one set of parameters; channel groups filled on first use."""

    def __init__(self, scan_path: str, params: Mapping[str, str]) -> None:
        self.scan_path, self.params = scan_path, dict(params)
        # an in-memory file (never written to disk); HDF5 wants a distinct name per open file
        self.file = h5py.File(f"dada-analyses-{next(_names)}", "w", driver="core", backing_store=False)
        self.file.attrs.update({"NX_class": "NXroot", "default": DEFAULT, "scan": scan_path})
        for name in CHANNELS:
            self.file.create_group(name).attrs["NX_class"] = "NXdata"
        self.filled: set[str] = set()
        self.lock = threading.Lock()

    def args(self, name: str) -> dict[str, Any]:
        """The channel's parameters: this file's, where the channel has them, else its defaults."""
        ep = CHANNELS[name]
        own = {k: v for k, v in self.params.items() if k in ep.model.by_name}
        return ep.model.parse(own)

    def fill(self, name: str, computed: dict[str, np.ndarray], attrs: dict[str, Any], units: dict[str, str]) -> None:
        """Write a channel's outputs as an NXdata group: signal, auxiliary signals of the map's shape, axes."""
        with self.lock:
            if name in self.filled:
                return
            group = self.file[name]
            signal = next(iter(computed))
            shape = computed[signal].shape
            for out, values in computed.items():
                ds = group.create_dataset(out, data=values)
                ds.attrs.update({"units": units[out], "long_name": f"{out} ({units[out]})" if units[out] else out})
            vert, horz = (np.arange(*attrs[k], dtype=np.int64) for k in ("vert", "horz"))
            for axis, values, what in (("vert", vert, "scan row"), ("horz", horz, "scan column")):
                group.create_dataset(axis, data=values).attrs.update({"units": "point", "long_name": what})
            # maps are the last two dimensions; a 1-D output as long as another dimension is its axis (radii)
            mapped = shape[-2:] == (vert.size, horz.size)
            others = [next((o for o, v in computed.items() if v.shape == (n,)), ".")
                      for n in (shape[:-2] if mapped else shape)]
            group.attrs.update({
                "signal": signal,
                "auxiliary_signals": [o for o, v in computed.items() if o != signal and v.shape == shape],
                "axes": [*others, *(("vert", "horz") if mapped else ())],
                "title": f"{name} of {self.scan_path}",
            })
            own = attrs.get(name, {})
            for key, value in flat_attrs({**{k: v for k, v in attrs.items() if k != name}, **own}).items():
                group.attrs[key] = value
            self.filled.add(name)


def flat_attrs(attrs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A result's provenance and parameters as HDF5 attributes (nested names joined by '.'; unset ones left out)."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, Mapping):
            out.update(flat_attrs(value, f"{prefix}{key}."))
        elif value is not None:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


class AnalysisFiles:
    """The virtual files, kept per scan state and parameters, computed through the dispatcher's endpoints."""

    def __init__(self, dispatch: Dispatcher, size: int = 16) -> None:
        self.dispatch = dispatch
        self.memo = Memo(size)

    @staticmethod
    def check_params(query: Mapping[str, str], ignore: set[str]) -> dict[str, str]:
        """The analysis parameters of an h5grove query; 400 for a name no channel knows or a bad value."""
        params = {k: v for k, v in query.items() if k not in ignore}
        for key in params:
            if not any(key in ep.model.by_name and not ep.model.by_name[key].presentation
                       for ep in CHANNELS.values()):
                raise BadParameter(key, "unknown parameter",
                                   "h5grove's, or the parameters of dada's STXM channels")
        for ep in CHANNELS.values():
            ep.model.parse({k: v for k, v in params.items() if k in ep.model.by_name})
        return params

    def get(self, scan_path: str, params: Mapping[str, str]) -> Analyses:
        """The file for this scan (404 if there is none) and parameters: runs in a worker thread."""
        scan = self.dispatch.catalog.scan(scan_path)
        key = (scan.identity, tuple(sorted(params.items())))
        return self.memo.get(key, lambda: Analyses(scan_path, params))  # a new scan state: a new file

    def plan(self, files: Analyses, name: str) -> tuple[Target, dict[str, Any], int]:
        """A channel's target, parameters and working bytes; 400/413 before anything is read."""
        ep = CHANNELS[name]
        args = files.args(name)
        target = ep.resolve(self.dispatch.catalog, files.scan_path, None)
        plan = ep.plan(target, args, self.dispatch.catalog)
        self.dispatch._check(ep, plan, "npy")
        return target, args, plan.work_bytes

    def compute(self, files: Analyses, name: str, target: Target, args: dict[str, Any]) -> None:
        """Every output of the channel, as its route's ``.npy`` of that output would answer it."""
        ep = CHANNELS[name]
        ctx = Context(self.dispatch.catalog, self.dispatch.partials)
        computed = self.dispatch._compute(ep, target, args, named_files(ep, self.dispatch.catalog, args), ctx)
        channel = next(iter(ep.channels.values()))
        arrays = {out: ep.present(computed, {**args, "output": out}).primary for out in channel.outputs}
        units = {out: channel.unit(out, args) or "" for out in channel.outputs}
        files.fill(name, arrays, computed.attrs, units)
