"""Command line: ``dada serve`` and ``dada demo``."""

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


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (see the README)")
    p.add_argument("--threads", type=int, help="worker threads for reading and computing")
    p.add_argument("--max-output-bytes", type=int, help="413 for answers larger than this")
    p.add_argument("--max-frames", type=int, help="413 for requests reading more frames than this")


def _config(args: argparse.Namespace, roots: dict[str, str] | None):
    from dada.config import Config

    return Config.load(
        args.config, roots=roots or None, host=args.host, port=args.port, threads=args.threads,
        max_output_bytes=args.max_output_bytes, max_frames=args.max_frames,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from dada.server.app import serve

    roots: dict[str, str] = {}
    if args.data_root:
        roots[""] = args.data_root
    for name, path in args.root or ():
        roots[name] = path
    serve(_config(args, roots))
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


def parser() -> argparse.ArgumentParser:
    from dada.demo import SIZES

    top = argparse.ArgumentParser(
        prog="dada",
        description="dada, the data daemon for scanning X-ray beamlines: raw frames and maps by URL.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="serve a data root over HTTP",
                       description="Serve the scans below DATA_ROOT (and/or named --root folders) over HTTP.")
    s.add_argument("data_root", nargs="?", metavar="DATA_ROOT", help="folder whose scans are served")
    s.add_argument("--root", action="append", type=_root_arg, metavar="NAME=PATH",
                   help="a named data root (repeatable); URLs then start with NAME")
    _add_server_flags(s)
    s.set_defaults(func=cmd_serve)

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
    d.set_defaults(func=cmd_demo)
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
