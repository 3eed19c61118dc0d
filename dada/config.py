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

    [[tokens]]                     # access control: each token reads some subtrees (dada token)
    name = "p10-beamtime-42"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    paths = ["p10/2026/beamtime-42"]
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

NODE_SECRET_ENV = "DADA_NODE_SECRET"


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
    # A complete scan's files are stat'ed again at most this often (0: on every request). Under many
    # concurrent requests for one scan this saves most stat calls; an answer then reflects the files as
    # they were at most this long before the request.
    recheck_seconds: float = 0.05
    # cluster (the front): nodes as URLs, or one load balancer; neither: local nodes, one per core
    nodes: tuple[str, ...] = ()
    lb: str | None = None
    local_nodes: int = max(1, os.cpu_count() or 1)
    node_threads: int = 1  # threads of each local node
    per_node: int = 2  # jobs in flight per node
    lb_concurrency: int = 16  # jobs in flight through --lb: best the nodes' slots in all (maxconn x nodes)
    job_timeout: float = 60.0  # s, before a job is retried elsewhere
    block_frames: int | None = None  # frames per block; default from the frame size (dada.cluster.blocks)
    # the polar reduction a whole-scan /stxm request keeps per block (dada.stxm.reduction): radial bins of
    # reduction_dr px (an integer) x 48 sectors, out to the largest circle inside the frame, at most
    # reduction_cells cells per point (0: none kept, the default: the pass that also reduces still costs about
    # 1.4-1.8x the channels' alone, benchmarks/README.md). 25000 covers 1065x1030 frames (515 px, 24720 cells).
    # A front keeping them keeps up to 64 MiB of freed memory per heap for the next answer (dada.server.heap).
    reduction_dr: int = 1
    reduction_cells: int = 0
    # the front holds a reduction's cumulative cells (sector requests answered in milliseconds) for the points
    # of each of the last two requests, up to this many bytes each (uint16 while the sums fit: (radial bins +
    # 1) x 48 x points x 2); beyond it a sector request reads every block's cells again (seconds)
    reduction_held_bytes: int = 2**30
    # result cache: memory, then disk (embedded default), then Aerospike when named ("host:port,…")
    cache_memory_bytes: int = 512 * 2**20
    cache_dir: str | None = os.path.join(os.path.expanduser("~"), ".cache", "dada")
    cache_disk_bytes: int = 10 * 2**30
    aerospike: str | None = None
    answer_cache_bytes: int = 128 * 2**20  # encoded answers of complete scans kept in memory, by ETag
    # working memory of the requests computing at once (each plan says its share); beyond it they wait
    work_budget_bytes: int = 4 * 2**30
    aerospike_namespace: str = "dada"
    # access control: [[tokens]] tables of name, sha256 (of the token; `dada token` makes both) and paths
    # (subtrees below the data root it reads). None named: open, as the embedded demo is.
    tokens: tuple[dict[str, Any], ...] = ()
    # nodes answer only requests carrying this secret (the front sends it; DADA_NODE_SECRET in the
    # environment works too), or from these networks; the front makes a fresh secret for its local nodes
    node_secret: str | None = None
    node_networks: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API ("*": any); none by default
    # an h5web page reading dada's /h5grove/ API, as a URL template holding {file} (e.g.
    # "http://host:5173/?file={file}"): /api names it and the GUI links each scan to it
    h5web_url: str | None = None

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
            for name in ("dataset_paths", "nodes", "tokens", "node_networks", "cors_origins"):
                if name in values:
                    values[name] = tuple(values[name])
        cfg = replace(cls(), **values)
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
        if cfg.node_secret is None and os.environ.get(NODE_SECRET_ENV):
            cfg = replace(cfg, node_secret=os.environ[NODE_SECRET_ENV])
        if not cfg.roots:
            raise ValueError("no data root: give DATA_ROOT or a [roots] table in the config file")
        if cfg.h5web_url is not None and "{file}" not in cfg.h5web_url:
            raise ValueError(f"h5web_url must hold {{file}}, where a scan's path goes: {cfg.h5web_url!r}")
        return cfg
