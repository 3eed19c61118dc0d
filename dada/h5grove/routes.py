"""The h5grove routes on dada's aiohttp app: ``/h5grove/{meta,attr,data,stats,paths}/?file=…&path=…``.

Each answer is h5grove's own: ``h5grove.content.create_content`` reads the entity and
``h5grove.encoders.encode`` encodes it (json, bin, csv, npy, tiff), so the bytes are those of
h5grove's reference servers. What is dada's: ``file`` is a path below the data root (a scan's path,
as every route takes it, names its master file; ``{scan}.dada`` its analyses, see
:mod:`dada.h5grove.analyses`), tokens and subtrees as on every route, dada's JSON errors, 413 from
the selection's shape and dtype before a value is read, and the reading in the worker pool."""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import h5py
import numpy as np
from aiohttp import web
from h5grove.content import DatasetContent, GroupContent, ResolvedEntityContent, create_content
from h5grove.encoders import encode
from h5grove.models import LinkResolution
from h5grove.utils import (
    NotFoundError,
    QueryArgumentError,
    hdf_path_join,
    parse_bool_arg,
    parse_link_resolution_arg,
    parse_slice,
)

from dada.confine import inside
from dada.endpoint import WORK_PER_OUTPUT
from dada.errors import BadParameter, Forbidden, NotFound, TooLarge, Unprocessable
from dada.h5grove.analyses import CHANNELS, SUFFIX, AnalysisFiles
from dada.h5grove.files import ConfinedFile, readable
from dada.server.access import Grant, without_token
from dada.server.routing import TEXT_EXPANSION, Dispatcher
from dada.sources.catalog import scan_name

PREFIX = "/h5grove"
PARAMS = {"file", "path", "resolve_links", "selection", "format", "dtype", "flatten", "attr_keys"}
Admits = Callable[[str], str | None]


def _covers(grant: Grant | None, urlpath: str) -> bool:
    """A file is granted with its folder, or with its scan (``x`` grants ``x_master.h5`` and its data files)."""
    if grant is None:
        return True
    head, name = posixpath.split(urlpath)
    return grant.covers(urlpath) or grant.covers(posixpath.join(head, scan_name(name)))


def _one(query: Mapping[str, str], name: str) -> str | None:
    values = query.getall(name, []) if hasattr(query, "getall") else [query[name]] if name in query else []
    if len(values) > 1:
        raise BadParameter(name, "is given more than once", "each parameter once (attr_keys may repeat)")
    return values[0] if values else None


def _selection(dset: h5py.Dataset, selection: str | None) -> tuple[int, ...]:
    """The shape a selection of the dataset reads, from its shape alone (no value is read); 400 if it is not
    one h5py can read."""
    if selection is None:
        return dset.shape or ()
    try:
        index = parse_slice(selection)
        if len(index) > dset.ndim:
            raise ValueError(f"{len(index)} members for a {dset.ndim}-D dataset")
        if any(isinstance(i, slice) and i.step is not None and i.step < 1 for i in index):
            raise ValueError("a step must be 1 or more")
        return np.broadcast_to(np.empty((), np.uint8), dset.shape)[index].shape
    except (ValueError, TypeError, IndexError) as exc:
        raise BadParameter("selection", f"{selection!r} cannot select from shape {dset.shape}: {exc}",
                           "NumPy-like indices and slices, e.g. 0,:,10:20") from None


def _nbytes(attr: h5py.h5a.AttrID) -> int:
    """An attribute's size from its shape and type, read before its value (a variable-length string counts
    as its pointer: HDF5 keeps each such attribute within 64 kB anyway)."""
    return int(np.prod(attr.shape or (), dtype=np.int64)) * attr.dtype.itemsize


class H5Grove:
    """The routes' state: the dispatcher (catalog, access, limits, budget, pool) and the analyses' files."""

    def __init__(self, dispatch: Dispatcher) -> None:
        self.dispatch = dispatch
        self.analyses = AnalysisFiles(dispatch)

    def register(self, app: web.Application) -> None:
        app.router.add_get(PREFIX + "/", self.ok)
        for name, answer in (("meta", self.meta), ("attr", self.attr), ("data", self.data),
                             ("stats", self.stats), ("paths", self.paths)):
            handler = self._handler(answer)
            app.router.add_get(f"{PREFIX}/{name}/", handler)
            app.router.add_get(f"{PREFIX}/{name}", handler)

    async def ok(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _work(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.dispatch.pool, fn, *args)

    def _handler(self, answer: Callable[..., Awaitable[tuple[bytes, dict[str, str]]]]
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            grant = self.dispatch.access.grant(request)  # 401 before anything about the data is said
            h5file, args = await self._open(grant, without_token(request.query))
            body, headers = await answer(h5file, args)
            headers.pop("Content-Length", None)
            self.dispatch.metrics.bytes_out.labels("h5grove").inc(len(body))
            return web.Response(body=body, headers=headers)

        return handle

    # -- the file --------------------------------------------------------------------------------

    async def _open(self, grant: Grant | None, query: Mapping[str, str]) -> tuple[ConfinedFile, dict[str, Any]]:
        """The request's file, confined, and its h5grove parameters (400 for unknown ones)."""
        file = _one(query, "file")
        if not file:
            raise BadParameter("file", "missing", "a file path below the data root, or {scan}.dada")
        args = {k: _one(query, k) for k in PARAMS - {"attr_keys"}}
        args["attr_keys"] = query.getall("attr_keys", []) if hasattr(query, "getall") else []
        if file.endswith(SUFFIX):
            return await self._analyses(grant, file[: -len(SUFFIX)], query, args)
        unknown = sorted(set(query) - PARAMS)
        if unknown:
            raise BadParameter(unknown[0], "unknown parameter", f"h5grove's: {', '.join(sorted(PARAMS))}")
        catalog = self.dispatch.catalog
        try:
            root, real = await self._work(catalog.file, file)
        except NotFound:  # a scan's path, as every other route takes it, names its (master) file
            root, _, real = await self._work(catalog.locate, file)
        if not _covers(grant, catalog.urlpath(root, real)):
            raise Forbidden(f"this token does not grant the file at {file.strip('/')!r}")

        def admits(path: str) -> str | None:
            real = inside(root, path)
            return real if real is not None and _covers(grant, catalog.urlpath(root, real)) else None

        handle = await self._work(catalog.handles.get, real)
        return ConfinedFile(handle, admits), args

    async def _analyses(self, grant: Grant | None, scan: str, query: Mapping[str, str], args: dict[str, Any]
                        ) -> tuple[ConfinedFile, dict[str, Any]]:
        """The scan's virtual file, with the channel group the path names computed first (within budget)."""
        access = self.dispatch.access
        access.check(grant, scan)
        params = self.analyses.check_params(query, PARAMS)
        for ep in CHANNELS.values():
            for p in ep.model.params:
                if p.names_file and params.get(p.name):
                    access.check(grant, params[p.name], "file")
        files = await self._work(self.analyses.get, scan, params)
        group = (args["path"] or "/").strip("/").split("/")[0]
        if group in CHANNELS and group not in files.filled:
            target, cargs, work = await self._work(self.analyses.plan, files, group)
            async with self.dispatch.budget.reserve(work):
                await self._work(self.analyses.compute, files, group, target, cargs)
        return ConfinedFile(files.file, lambda _path: None), args

    # -- the routes ----------------------------------------------------------------------------------

    def _content(self, h5file: ConfinedFile, args: dict[str, Any]) -> Any:
        try:
            resolve = parse_link_resolution_arg(args["resolve_links"], fallback=LinkResolution.ONLY_VALID)
        except QueryArgumentError as exc:
            raise BadParameter("resolve_links", str(exc), "all, none or only_valid") from None
        try:
            return create_content(h5file, args["path"], resolve)
        except NotFoundError as exc:
            raise NotFound(str(exc)) from None
        except KeyError as exc:
            raise NotFound(f"{args['path']}: {exc.args[0] if exc.args else 'not found'}") from None

    def _dataset(self, h5file: ConfinedFile, args: dict[str, Any]) -> tuple[DatasetContent, h5py.Dataset]:
        content = self._content(h5file, args)
        if not isinstance(content, DatasetContent):
            raise BadParameter("path", f"{content.path} is not a dataset", "the path of a dataset")
        dset = h5file[content.path]
        readable(dset, h5file.admits)
        return content, dset

    def _limit(self, nbytes: int, what: str) -> None:
        limit = self.dispatch.config.max_output_bytes
        if nbytes > limit:
            raise TooLarge(f"{what} would be about {nbytes} bytes, over the limit of {limit}; select a smaller "
                           "part (selection=…)", limit="max_output_bytes", estimate=nbytes)

    async def meta(self, h5file: ConfinedFile, args: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        def run() -> Any:
            return _encoded(lambda: self._content(h5file, args).metadata(), None, _name(h5file))

        return await self._work(run)

    async def attr(self, h5file: ConfinedFile, args: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        def run() -> Any:
            content = self._content(h5file, args)
            if not isinstance(content, ResolvedEntityContent):
                raise BadParameter("path", f"{content.path} is an unresolved link", "the path of a resolved entity")
            attrs = h5file[content.path].attrs
            keys = args["attr_keys"] or list(attrs)
            missing = [k for k in keys if k not in attrs]
            if missing:
                raise NotFound(f"{content.path} has no attribute {missing[0]!r}")
            self._limit(sum(_nbytes(attrs.get_id(k)) for k in keys) * TEXT_EXPANSION["json"], "the answer")
            return _encoded(lambda: content.attributes(args["attr_keys"] or None), None, _name(h5file))

        return await self._work(run)

    async def data(self, h5file: ConfinedFile, args: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        def plan() -> tuple[DatasetContent, int, str]:
            content, dset = self._dataset(h5file, args)
            nbytes = int(np.prod(_selection(dset, args["selection"]), dtype=np.int64)) * dset.dtype.itemsize
            self._limit(nbytes * TEXT_EXPANSION.get(args["format"] or "json", 1), "the answer")
            return content, nbytes, _where(dset)

        def run(content: DatasetContent, where: str) -> tuple[bytes, dict[str, str]]:
            flatten = parse_bool_arg(args["flatten"], fallback=False)
            values = lambda: content.data(args["selection"], flatten, args["dtype"])  # noqa: E731
            return _encoded(values, args["format"], where, True)

        content, nbytes, where = await self._work(plan)
        async with self.dispatch.budget.reserve(WORK_PER_OUTPUT * nbytes):
            return await self._work(run, content, where)

    async def stats(self, h5file: ConfinedFile, args: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        def plan() -> tuple[DatasetContent, int, str]:
            content, dset = self._dataset(h5file, args)
            nbytes = int(np.prod(_selection(dset, args["selection"]), dtype=np.int64)) * dset.dtype.itemsize
            self._limit(nbytes, "the selection the statistics read")
            return content, nbytes, _where(dset)

        def run(content: DatasetContent, where: str) -> tuple[bytes, dict[str, str]]:
            return _encoded(lambda: content.data_stats(args["selection"]), None, where, True)

        content, nbytes, where = await self._work(plan)
        async with self.dispatch.budget.reserve(WORK_PER_OUTPUT * nbytes):
            return await self._work(run, content, where)

    async def paths(self, h5file: ConfinedFile, args: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        def run() -> tuple[bytes, dict[str, str]]:
            base = self._content(h5file, args)
            if not isinstance(base, GroupContent):
                raise BadParameter("path", f"{base.path} is not a group", "the path of a group")
            found: list[bytes] = []
            group = h5file[base.path]  # held: the link proxy below does not keep the group's identifier alive
            group.id.links.visit(found.append)  # names first: an error raised inside HDF5's visit would be lost
            names = [base.path] + [self._content(h5file, {**args, "path": hdf_path_join(args["path"], n.decode())}).path
                                   for n in found]
            return _encoded(lambda: names, None, _name(h5file))

        return await self._work(run)


def _name(h5file: h5py.File) -> str:
    return os.path.basename(h5file.filename)


def _where(dset: h5py.Dataset) -> str:
    return f"{_name(dset.file)}:{dset.name}"


def _encoded(make: Callable[[], Any], fmt: str | None, where: str, sliced: bool = False
             ) -> tuple[bytes, dict[str, str]]:
    """h5grove's encoding of what ``make`` reads from ``where`` (a file, or a dataset whose ``sliced``
    selection is read); its errors become dada's: 400 naming a parameter, 422 for what HDF5 cannot read."""
    try:
        value = make()
    except QueryArgumentError as exc:
        raise BadParameter("dtype", str(exc), "origin or safe") from None
    except (ValueError, TypeError, IndexError) as exc:
        if sliced:
            raise BadParameter("selection", str(exc), "NumPy-like indices and slices within the shape") from None
        raise Unprocessable(f"{where} cannot be described: {exc}") from None
    except OSError as exc:
        raise Unprocessable(f"{where} cannot be read: {exc}") from None
    try:
        response = encode(value, fmt)
    except QueryArgumentError as exc:
        raise BadParameter("format", str(exc), "json, bin, csv, npy or tiff") from None
    except (ValueError, TypeError) as exc:  # e.g. csv of a 3-D selection
        raise BadParameter("format", f"{fmt} cannot hold this answer ({exc})",
                           "csv: 1-D or 2-D; tiff: 2-D; json, bin, npy: any") from None
    return response.content, dict(response.headers)

