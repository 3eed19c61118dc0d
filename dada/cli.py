"""Command line: ``dada serve`` (the front), ``dada node`` (an analysis node), ``dada demo``, ``dada get``
(download a URL) and ``dada token`` (make an access token)."""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_DEMO = "dada-demo"


def _root_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH")
    return name, path


def _add_roots(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_root", nargs="?", metavar="DATA_ROOT", help="folder whose scans are served")
    p.add_argument("--root", action="append", type=_root_arg, metavar="NAME=PATH",
                   help="a named data root (repeatable); URLs then start with NAME")


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (see the README)")
    p.add_argument("--threads", type=int, help="worker threads for reading and computing")
    p.add_argument("--max-output-bytes", type=int, help="413 for answers larger than this")
    p.add_argument("--max-frames", type=int, help="413 for requests reading more frames than this")
    p.add_argument("--dataset-path", action="append", metavar="PATH",
                   help="HDF5 path of a plain file's frames, first match wins (repeatable; config: dataset_paths)")


def _add_front_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", help="analysis nodes as URL,URL,... (default: start one local node per core)")
    p.add_argument("--lb", metavar="URL", help="one load balancer in front of the nodes, instead of --nodes")
    p.add_argument("--lb-concurrency", type=int,
                   help="jobs in flight through --lb (default 16; best: the nodes' slots in all, maxconn x nodes)")
    p.add_argument("--local-nodes", type=int, help="how many local nodes to start when no nodes are given")
    p.add_argument("--block-frames", type=int,
                   help="frames per block (default: about a second of a node's work)")
    p.add_argument("--cache-dir", help="on-disk result cache (default ~/.cache/dada; 'none' for no disk cache)")
    p.add_argument("--cache-bytes", type=int, help="bound of the on-disk result cache")
    p.add_argument("--aerospike", metavar="HOST:PORT,...", help="Aerospike cluster for the result cache")


def _config(args: argparse.Namespace, roots: dict[str, str] | None):
    from dada.config import Config

    get = lambda name: getattr(args, name, None)  # noqa: E731
    nodes = tuple(u for u in (get("nodes") or "").split(",") if u) or None
    cache_dir = get("cache_dir")
    return Config.load(
        args.config, roots=roots or None, host=args.host, port=args.port, threads=args.threads,
        max_output_bytes=args.max_output_bytes, max_frames=args.max_frames, nodes=nodes, lb=get("lb"),
        dataset_paths=tuple(args.dataset_path) if args.dataset_path else None,
        local_nodes=get("local_nodes"), lb_concurrency=get("lb_concurrency"), block_frames=get("block_frames"),
        cache_disk_bytes=get("cache_bytes"), aerospike=get("aerospike"),
        **({"cache_dir": "" if cache_dir == "none" else cache_dir} if cache_dir else {}),
    )


def _roots(args: argparse.Namespace) -> dict[str, str]:
    roots: dict[str, str] = {}
    if args.data_root:
        roots[""] = args.data_root
    for name, path in args.root or ():
        roots[name] = path
    return roots


def cmd_serve(args: argparse.Namespace) -> int:
    from dada.server.app import serve

    serve(_config(args, _roots(args)), "front")
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    from dada.server.app import serve

    serve(_config(args, _roots(args)), "node")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dada.demo import demo_exists, make_demo

    if args.force or not demo_exists(args.dir):
        make_demo(args.dir, args.size)
    else:
        print(f"dada demo: using the existing demo data in {args.dir} (--force to regenerate)", file=sys.stderr)
    if args.serve:
        from dada.server.app import serve

        cfg = _config(args, {"": os.path.abspath(args.dir)})
        print(f"dada demo: open http://{cfg.host}:{cfg.port}/api  e.g. "
              f"http://{cfg.host}:{cfg.port}/frame/eiger/u16/scan_0001/0.png?log=1", file=sys.stderr)
        serve(cfg)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    from dada.client import ServerError, download

    try:
        download(args.url, args.output, token=args.token, progress=not args.no_progress)
    except ServerError as exc:
        print(f"dada get: {exc}", file=sys.stderr)
        return 1 if exc.status < 500 else 2
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """A new random token, shown once, and the config lines that grant it: only its hash is kept."""
    import secrets

    from dada.server.access import digest

    token = secrets.token_urlsafe(32)
    paths = ", ".join(f'"{p.strip("/")}"' for p in args.paths)
    print(f"# the token for {args.name}: hand it over, it is shown only this once\n{token}\n"
          f"# and for the daemon's configuration file:\n[[tokens]]\nname = \"{args.name}\"\n"
          f"sha256 = \"{digest(token)}\"\npaths = [{paths}]")
    return 0


def parser() -> argparse.ArgumentParser:
    from dada.demo import SIZES

    top = argparse.ArgumentParser(
        prog="dada",
        description="dada, the data daemon for scanning X-ray beamlines: raw frames and maps by URL.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="serve a data root over HTTP",
                       description="Serve the scans below DATA_ROOT (and/or named --root folders) over HTTP.")
    _add_roots(s)
    _add_server_flags(s)
    _add_front_flags(s)
    s.set_defaults(func=cmd_serve)

    n = sub.add_parser("node", help="serve as an analysis node behind a front",
                       description="An ordinary daemon on DATA_ROOT that also answers the front's block URLs.")
    _add_roots(n)
    _add_server_flags(n)
    n.set_defaults(func=cmd_node)

    d = sub.add_parser("demo", help="generate synthetic scans with planted truth (and serve them)",
                       description="Generate Eiger-like demo scans with ground-truth maps into DIR "
                                   "(if absent), optionally serving them.")
    d.add_argument("dir", nargs="?", default=DEFAULT_DEMO, metavar="DIR",
                   help=f"where the demo data go (default ./{DEFAULT_DEMO})")
    d.add_argument("--size", choices=sorted(SIZES), default="small",
                   help="tiny (tests), small (default, < 1 min), medium, realistic (100x100 of 1065x1030)")
    d.add_argument("--force", action="store_true", help="regenerate even if the data exist")
    d.add_argument("--serve", action="store_true", help="then run dada serve on it")
    _add_server_flags(d)
    _add_front_flags(d)
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("get", help="download a dada URL to a file",
                       description="Download any dada URL to FILE: a progress bar for long maps, retries while "
                                   "the server is busy, the server's message (and exit status 1 for a client "
                                   "error) when it refuses.")
    g.add_argument("url", metavar="URL", help="absolute URL, e.g. http://localhost:8000/darkfield/eiger/u16/"
                                              "scan_0001.h5?rmin=12")
    g.add_argument("-o", "--output", required=True, metavar="FILE", help="where the answer goes ('-': stdout)")
    g.add_argument("--token", help="bearer token (default: $DADA_TOKEN)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_get)

    t = sub.add_parser("token", help="make an access token and its configuration lines",
                       description="Print a new random token, and the [[tokens]] lines for the daemon's config "
                                   "file that grant it read access to PATH... below the data root. The config "
                                   "holds only the token's SHA-256.")
    t.add_argument("name", metavar="NAME", help="who the token is for (logs and progress streams name it)")
    t.add_argument("paths", nargs="+", metavar="PATH", help="subtrees it reads, e.g. p10/2026/beamtime-42 ('' all)")
    t.set_defaults(func=cmd_token)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"dada: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
