"""Command line: ``dadafs serve``, ``dadafs mount``, ``dadafs status``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from dadafs import FRAGMENT_SIZE, SECRET_ENV, SECRET_HEADER, reuse_freed_memory


def shared_secret(path: str | None) -> str | None:
    """The secret server and mounts share: the file's text (stripped), else ``$DADAFS_SECRET``; None if neither.
    OSError or ValueError when the file cannot be read or is empty."""
    if path is None:
        return os.environ.get(SECRET_ENV) or None
    with open(path) as f:
        if os.fstat(f.fileno()).st_mode & 0o004:
            print(f"dadafs: warning: {path} is readable by every user: chmod 600 it", file=sys.stderr)
        secret = f.read().strip()
    if not secret:
        raise ValueError(f"{path} is empty")
    return secret


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from dada.nodeguard import NodeGuard
    from dadafs.server import make_app

    if not os.path.isdir(args.src):
        print(f"dadafs: {args.src} is not a folder", file=sys.stderr)
        return 2
    try:
        guard = NodeGuard.of(shared_secret(args.secret_file), args.allow, header=SECRET_HEADER)
    except (OSError, ValueError) as exc:
        print(f"dadafs: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cache = args.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "dadafs")
    app = make_app(args.src, cache, args.cache_bytes, args.fragment_size, guard)
    doors = ([SECRET_HEADER] if guard.secret else []) + [str(n) for n in guard.networks]
    logging.getLogger("dadafs").info("serving %s on http://%s:%d (fragment cache %s, %d bytes) to %s",
                                     args.src, args.host, args.port, cache, args.cache_bytes,
                                     " or ".join(doors) if doors else "anyone")
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


def cmd_mount(args: argparse.Namespace) -> int:
    from dadafs.mount import mount_background, mount_foreground

    if not os.path.isdir(args.mountpoint):
        print(f"dadafs: mount point {args.mountpoint} is not a folder", file=sys.stderr)
        return 2
    if not args.foreground:
        return mount_background(sys.argv[1:], args.mountpoint)
    from dadafs.fs import DadaFS
    from dadafs.remote import Refused, Remote

    try:
        secret = shared_secret(args.secret_file)
    except (OSError, ValueError) as exc:
        print(f"dadafs: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    remote = Remote(args.url, retry_for=args.retry, secret=secret)
    try:
        remote.stat("")  # before anything else: a refusal is said here, not as EIO on every read
        fs = DadaFS(remote, attr_ttl=args.attr_ttl, negative_ttl=args.negative_ttl, cache_bytes=args.cache_bytes,
                    readahead=args.readahead, immutable=args.immutable)
    except Refused:
        hint = "the secret given is not its secret" if secret else f"give its secret (--secret-file or ${SECRET_ENV})"
        print(f"dadafs: {args.url} refuses this mount (HTTP 403): {hint}, or mount from a network it allows",
              file=sys.stderr)
        return 1
    except Exception as exc:  # the server must answer once at mount time
        print(f"dadafs: {args.url} does not answer: {exc}", file=sys.stderr)
        return 1
    mount_foreground(fs, args.mountpoint, args.attr_ttl, args.immutable)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dadafs.fs import STATUS

    try:
        with open(os.path.join(args.mountpoint, STATUS.lstrip("/")), "rb") as f:
            status = json.loads(f.read())
    except OSError as exc:
        print(f"dadafs: {args.mountpoint} is not a dadafs mount ({exc})", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    d, m = status["data"], status["metadata"]

    def rate(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f} %"

    print(f"server      {status['server']}")
    print(f"data        hit rate {rate(d['hit_rate'])} ({d['hits']} hits, {d['misses']} misses), "
          f"{d['cached_bytes'] / 2**20:.1f} of {d['max_bytes'] / 2**20:.0f} MiB cached, {d['readaheads']} read-aheads")
    print(f"bytes       {d['read_bytes'] / 2**20:.1f} MiB read, {d['fetched_bytes'] / 2**20:.1f} MiB of them (or read "
          f"ahead) fetched from the server")
    print(f"metadata    hit rate {rate(m['hit_rate'])} ({m['hits']} hits, {m['misses']} misses), "
          f"{m['stale_served']} served stale while the server was away")
    print(f"remote      {status['remote']['requests']} requests, {status['remote']['failures']} failed")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dadafs", description="dadafs: the caching filesystem between storage "
                                  "and worker nodes (read-only).")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("serve", help="serve a folder over HTTP with an SSD fragment cache",
                       description="Serve SRC_DIR read-only over HTTP; fragments read are kept in --cache-dir.")
    s.add_argument("src", metavar="SRC_DIR")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8100, help="port (default 8100)")
    s.add_argument("--cache-dir", help="fragment cache folder on local SSD (default ~/.cache/dadafs)")
    s.add_argument("--cache-bytes", type=int, default=64 * 2**30, help="fragment cache bound (default 64 GiB)")
    s.add_argument("--fragment-size", type=int, default=FRAGMENT_SIZE, help="fragment size (default 4 MiB)")
    s.add_argument("--secret-file", metavar="FILE", help=f"answer only requests carrying this file's secret "
                   f"({SECRET_HEADER}) or from an --allow network; mode 0600 (default: ${SECRET_ENV})")
    s.add_argument("--allow", action="append", default=[], metavar="NETWORK",
                   help="answer this network (CIDR, e.g. 10.1.0.0/24) without the secret; repeatable")
    s.set_defaults(func=cmd_serve)

    m = sub.add_parser("mount", help="mount a dadafs server with FUSE",
                       description="Mount the tree a dadafs server serves at MOUNTPOINT (read-only).")
    m.add_argument("url", metavar="URL", help="the server, e.g. http://storage:8100")
    m.add_argument("mountpoint", metavar="MOUNTPOINT")
    m.add_argument("--foreground", action="store_true", help="stay in the foreground (systemd)")
    m.add_argument("--attr-ttl", type=float, default=1.0, help="seconds attributes and listings are trusted")
    m.add_argument("--negative-ttl", type=float, default=0.5, help="seconds a missing path is remembered")
    m.add_argument("--cache-bytes", type=int, default=128 * 2**20, help="RAM fragment cache bound (default 128 MiB)")
    m.add_argument("--readahead", type=int, default=4, help="most fragments read ahead of a sequential reader")
    m.add_argument("--retry", type=float, default=3.0, help="seconds to retry an unreachable server before EIO")
    m.add_argument("--immutable", action="store_true", help="files never change: let the kernel keep their pages")
    m.add_argument("--secret-file", metavar="FILE", help=f"the server's secret, sent as {SECRET_HEADER} on every "
                   f"request; mode 0600 (default: ${SECRET_ENV})")
    m.set_defaults(func=cmd_mount)

    st = sub.add_parser("status", help="cache hit rates of a mount", description="Print a mount's cache hit rates.")
    st.add_argument("mountpoint", metavar="MOUNTPOINT")
    st.add_argument("--json", action="store_true", help="the raw status document")
    st.set_defaults(func=cmd_status)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("serve", "mount"):
        reuse_freed_memory()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
