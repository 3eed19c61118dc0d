"""What is there: /browse (folders and scans) and /meta (one scan's metadata)."""

from __future__ import annotations

from typing import Any

from dada.endpoint import Context, Endpoint, Result, Target
from dada.params import Model
from dada.selection import GRID
from dada.sources.catalog import Catalog


class Browse(Endpoint):
    name = "browse"
    prefix = "/browse"
    summary = "Folders and scans directly below a folder of the data root."
    target = "folder"
    formats = ("json",)
    model = Model(())

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        catalog = ctx.catalog
        return Result(document=catalog.browse(target.folder or ""))


class Meta(Endpoint):
    name = "meta"
    prefix = "/meta"
    summary = "Scan metadata: grid, frame shape, dtype, detector geometry, files, completeness."
    formats = ("json",)
    model = Model((GRID,))

    def resolve(self, catalog: Catalog, path: str, item: int | None) -> Target:
        if catalog.holds_tomography(path):
            return Target(tomo=catalog.tomo(path))
        return super().resolve(catalog, path, item)

    def compute(self, target: Target, args: dict[str, Any], ctx: Context) -> Result:
        if target.tomo is not None:
            return Result(document={**target.tomo.describe(), "complete": True})
        scan = target.scan
        doc = scan.describe()
        if args["grid"] is not None:
            g = scan.grid_for(args["grid"])
            doc["grid"] = {"vert": g.vert, "horz": g.horz, "fast_axis": g.fast_axis, "snake": g.snake,
                           "source": "url"}
        elif doc["grid"] is not None:
            doc["grid"]["source"] = "metadata"
        return Result(document=doc)


BROWSE, META = Browse(), Meta()
