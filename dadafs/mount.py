"""Mounting: FUSE options for large reads, the kernel's read-ahead, and running in the background."""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import threading
import time

import mfusepy

from dadafs.fs import MAX_READ, DadaFS

log = logging.getLogger("dadafs.mount")


class FUSE(mfusepy.FUSE):
    """mfusepy's FUSE with reads copied straight from dadafs's cached fragments into libfuse's reply
    buffer (mfusepy's own read wants a bytes object per answer: one more copy, made holding the GIL)."""

    def read(self, path: bytes, buf, size: int, offset: int, fip) -> int:
        return self.operations.read_into(path.decode(self.encoding, self.errors), ctypes.addressof(buf.contents),
                                         size, offset, fip.contents.fh)


def raise_readahead(mountpoint: str, kib: int = 1024, wait: float = 10.0) -> None:
    """Once mounted, raise the mount's backing-device read-ahead (1 MiB kernel requests need it)."""
    deadline = time.monotonic() + wait
    while not os.path.ismount(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.05)
    dev = os.stat(mountpoint).st_dev
    path = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    try:
        with open(path, "w") as f:
            f.write(str(kib))
    except OSError as exc:
        log.warning("cannot set %s (%s): the kernel keeps its default read-ahead", path, exc)


def mount_foreground(fs: DadaFS, mountpoint: str, attr_ttl: float, immutable: bool) -> None:
    """Mount and serve until unmounted or SIGINT/SIGTERM (libfuse unmounts cleanly on both)."""
    threading.Thread(target=raise_readahead, args=(mountpoint,), daemon=True).start()
    options = dict(
        foreground=True, ro=True, fsname="dadafs", subtype="dadafs", max_read=MAX_READ,
        attr_timeout=attr_ttl, entry_timeout=attr_ttl, negative_timeout=fs.negative_ttl,
    )
    # Files that may change bypass the kernel's page cache: it is one per path, shared by readers
    # that opened different versions, so pages one version's reader filled would be served to the
    # other's (a mix). dadafs's own RAM cache is keyed by version and still serves repeat reads.
    # Immutable files keep the page cache.
    options["kernel_cache" if immutable else "direct_io"] = True
    try:
        FUSE(fs, mountpoint, **options)
    except RuntimeError as exc:
        # libfuse 3 reports leaving its loop on SIGINT/SIGTERM as a non-zero status; unmounted is done.
        if os.path.ismount(mountpoint):
            raise
        log.info("unmounted %s (libfuse status %s)", mountpoint, exc)


def mount_background(argv: list[str], mountpoint: str, timeout: float = 15.0) -> int:
    """Start ``dadafs mount --foreground`` detached and wait until the mount is there."""
    proc = subprocess.Popen([sys.executable, "-m", "dadafs.cli", *argv, "--foreground"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mountpoint):
            return 0
        if proc.poll() is not None:
            sys.stderr.write(proc.stderr.read().decode())
            return proc.returncode or 1
        time.sleep(0.05)
    print(f"dadafs: {mountpoint} did not appear within {timeout:.0f} s", file=sys.stderr)
    return 1
