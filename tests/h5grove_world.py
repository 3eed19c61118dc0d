"""Files for tests/test_h5grove.py: the demo data plus ``extra/`` (every dtype, links, virtual datasets, a
dataset too large to read) and ``outside/`` next to the root, which links aim at and nothing may read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import h5py
import numpy as np
from helpers import free_port, terminate

MARKER = b"H5GROVE-MARKER-OUTSIDE-THE-ROOT"
HERE = os.path.dirname(os.path.abspath(__file__))


def _dtypes(path: str) -> None:
    rng = np.random.default_rng(7)
    with h5py.File(path, "w") as f:
        for t in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", ">i4", ">f8", "<u2", "?"):
            f[f"num/{t.replace('>', 'be_').replace('<', 'le_').replace('?', 'bool')}"] = (
                rng.integers(0, 100, (5, 7)).astype(t))
        noisy = rng.normal(0, 1e3, (4, 6, 9))
        noisy[0, 0, :3] = [np.nan, np.inf, -np.inf]
        f["num/noisy3d"] = noisy
        f["num/c64"] = (rng.normal(size=6) + 1j * rng.normal(size=6)).astype(np.complex64)
        f["num/c128"] = rng.normal(size=(2, 3)) + 1j * rng.normal(size=(2, 3))
        f["num/scalar_int"] = np.int32(-42)
        f["num/scalar_float"] = 3.25
        f["num/ramp"] = np.arange(1000, dtype=np.int16)
        f["text/fixed"] = np.array([b"ab", b"cde", b"f"])
        f["text/vlen"] = np.array(["alpha", "beta", "ümlaut"], dtype=h5py.string_dtype())
        f["text/scalar"] = "a sentence"
        f["other/compound"] = np.array([(1, 2.5), (3, -1.0)], dtype=[("a", "<i4"), ("b", "<f8")])
        f.create_dataset("other/enum", data=np.array([0, 1, 1, 0], np.uint8),
                         dtype=h5py.enum_dtype({"OFF": 0, "ON": 1}, basetype="u1"))
        f.create_dataset("other/empty", data=h5py.Empty("f4"))
        z = f.create_dataset("compressed/gzip", data=rng.integers(0, 9, (10, 20)).astype(np.uint16),
                             compression="gzip", chunks=(5, 5))
        z.attrs["note"] = "chunked and gzip"
        f["num"].attrs.update({"int": 3, "float": 1.5, "array": np.arange(4.0), "text": "hello",
                               "texts": np.array(["a", "bc"], dtype=h5py.string_dtype()), "flag": np.bool_(True)})


def _links(extra: str, outside: str) -> None:
    rng = np.random.default_rng(8)
    with h5py.File(os.path.join(extra, "target.h5"), "w") as f:
        f["values"] = rng.normal(size=(3, 4))
        f["group/inner"] = np.arange(5)
        f["group"].attrs["kind"] = "target group"
    with h5py.File(os.path.join(extra, "links.h5"), "w") as f:
        f["group/data"] = np.arange(12, dtype=np.float32).reshape(3, 4)
        f["soft_data"] = h5py.SoftLink("/group/data")
        f["soft_group"] = h5py.SoftLink("/group")
        f["soft_dangling"] = h5py.SoftLink("/nowhere")
        f["ext_data"] = h5py.ExternalLink("target.h5", "/values")
        f["ext_group"] = h5py.ExternalLink("target.h5", "/group")
        f["ext_dangling"] = h5py.ExternalLink("missing.h5", "/values")
        f["ext_scan"] = h5py.ExternalLink("../eiger/u16/scan_0001_master.h5", "/entry/data")
        layout = h5py.VirtualLayout((2, 3, 4), np.float64)
        for i in range(2):
            layout[i] = h5py.VirtualSource("target.h5", "values", (3, 4))
        f.create_virtual_dataset("vds_inside", layout)
    with h5py.File(os.path.join(extra, "loops.h5"), "w") as f:  # h5grove's own server answers 500 here
        f["loop_a"] = h5py.SoftLink("/loop_b")
        f["loop_b"] = h5py.SoftLink("/loop_a/x")
        f["fine"] = np.arange(3)
    secret = os.path.join(outside, "secret.h5")
    with h5py.File(secret, "w") as f:
        f["values"] = np.frombuffer(MARKER, np.uint8).reshape(1, -1)
        f["values"].attrs["marker"] = MARKER.decode()
    with open(os.path.join(outside, "marker.bin"), "wb") as fh:
        fh.write(MARKER * 4)
    with h5py.File(os.path.join(extra, "escape.h5"), "w") as f:
        f["abs"] = h5py.ExternalLink(secret, "/values")
        f["rel"] = h5py.ExternalLink("../../outside/secret.h5", "/values")
        f["rel_group"] = h5py.ExternalLink("../../outside/secret.h5", "/")
        f["soft_to_abs"] = h5py.SoftLink("/abs")
        layout = h5py.VirtualLayout((1, len(MARKER)), np.uint8)
        layout[:] = h5py.VirtualSource(secret, "values", (1, len(MARKER)))
        f.create_virtual_dataset("vds_outside", layout)
        f.create_dataset("raw_outside", (len(MARKER),), dtype=np.uint8,
                         external=[(os.path.join(outside, "marker.bin"), 0, len(MARKER))])
    os.symlink(secret, os.path.join(extra, "symlink_out.h5"))
    with h5py.File(os.path.join(extra, "huge.h5"), "w") as f:  # 8 TB promised, nothing allocated
        f.create_dataset("big", shape=(1_000_000, 1_000_000), dtype=np.float64, chunks=(256, 256))


def build(base: str, demo_root: str) -> tuple[str, str]:
    """(root, outside) below ``base``: a copy of the demo plus ``extra/``."""
    root, outside = os.path.join(base, "root"), os.path.join(base, "outside")
    shutil.copytree(demo_root, root)
    extra = os.path.join(root, "extra")
    os.makedirs(extra)
    os.makedirs(outside)
    _dtypes(os.path.join(extra, "dtypes.h5"))
    _links(extra, outside)
    return os.path.realpath(root), os.path.realpath(outside)


class Reference:
    """h5grove's own Tornado server on ``root`` (tests/h5grove_reference.py), as a process on loopback."""

    def __init__(self, root: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (a pipe nobody reads would fill and block it)
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "h5grove_reference.py"), root,
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/", timeout=2) as r:
                    if r.read() == b"ok":
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the h5grove reference server did not come up")

    def stop(self) -> None:
        terminate(self.proc, self.log)
