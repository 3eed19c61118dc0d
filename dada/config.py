"""Daemon configuration: a TOML file, overridden by command-line flags.

Example ``dada.toml``::

    host = "0.0.0.0"
    port = 8000
    max_output_bytes = 536870912   # 413 above this, checked before reading
    max_frames = 200000            # 413 for requests reading more frames
    threads = 4                    # worker threads for reading and computing
    handle_cache = 64              # open HDF5 files kept
    dataset_paths = ["entry/data/data", "measurement/frames"]

    [roots]                        # several data roots: the first URL segment names one
    p10 = "/gpfs/p10/raw"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Config:
    roots: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    max_output_bytes: int = 512 * 2**20
    max_frames: int = 200_000
    threads: int = max(2, os.cpu_count() or 2)
    handle_cache: int = 64
    dataset_paths: tuple[str, ...] = ("entry/data/data",)

    @classmethod
    def load(cls, path: str | None = None, **overrides: Any) -> Config:
        """Defaults, then the TOML file, then the non-None overrides (command-line flags)."""
        values: dict[str, Any] = {}
        if path:
            with open(path, "rb") as f:
                values = tomllib.load(f)
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ValueError(f"{path}: unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            if "dataset_paths" in values:
                values["dataset_paths"] = tuple(values["dataset_paths"])
        cfg = replace(cls(), **values)
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        if not cfg.roots:
            raise ValueError("no data root: give DATA_ROOT or a [roots] table in the config file")
        return cfg
