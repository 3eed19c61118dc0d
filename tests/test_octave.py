"""The README's Matlab block runs in GNU Octave against a real daemon and gets numpy's numbers.

The block is taken from README.md itself; each line carrying ``% Octave: …`` is replaced by that
Octave statement, every other line runs as written (so it is proven to be Octave as well as Matlab).
``octave-cli`` without a display has no graphics toolkit, so ``imagesc``, ``axis`` and ``colorbar``
are stubs here; the ``imagesc`` stub keeps the array it was given, to check what would be shown.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import missing

README = (Path(__file__).parent.parent / "README.md").read_text()
MARK = "% Octave: "
SCAN = "eiger/u16/scan_0001"

STUBS = {
    "imagesc": "function imagesc(c, varargin)\n  save('-v7', 'imagesc.mat', 'c');\nend\n",
    "axis": "function axis(varargin)\nend\n",
    "colorbar": "function colorbar(varargin)\nend\n",
}

# What the README says in prose next to the block, checked in the same Octave run.
CLAIMS = """
urlwrite('{base}/frame/{scan}/17.csv', 'f.csv');
c = csvread('f.csv');
urlwrite('{base}/dpc/{scan}.mat', 'dpc.mat');
d = load('dpc.mat');
dpc_x = squeeze(d.dpc(1, :, :));
token = 'not-checked-here';
{token_line}
meta_tok = jsondecode(webread('{base}/meta/{scan}.json', opts));
save('-v7', 'out.mat', 'meta', 's', 'f', 'h', 'c', 'dpc_x', 'meta_tok');
"""


def matlab_block() -> str:
    examples = README.split("\n## Examples\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```matlab\n(.*?)```", examples, flags=re.S)
    return code


def octave_version(code: str) -> tuple[str, int]:
    """The block with each ``% Octave:`` line swapped in, and how many were swapped."""
    lines, swapped = [], 0
    for line in code.splitlines():
        stmt, sep, alt = line.partition(MARK)
        if sep and stmt.strip() and not stmt.lstrip().startswith("%"):
            lines.append(alt.strip())
            swapped += 1
        else:
            lines.append(line)
    return "\n".join(lines) + "\n", swapped


def token_line(code: str) -> str:
    (line,) = re.findall(r"^% with a token: (opts = weboptions\(.*\);)$", code, flags=re.M)
    return line


def npy(daemon, path: str) -> np.ndarray:
    r = daemon.get(path)
    assert r.status == 200, (path, r.body)
    return np.load(io.BytesIO(r.body))


@pytest.fixture(scope="module")
def octave_cli() -> str:
    exe = shutil.which("octave-cli")
    if exe is None:
        missing("octave-cli is missing (bash tests/install_parts.sh installs Debian's octave)")
    return exe


def test_readme_matlab_block_runs_in_octave(octave_cli, daemon, tmp_path):
    code = matlab_block()
    script, swapped = octave_version(code)
    assert swapped >= 5, script
    for matlab_only in ("websave", "h5read", "readmatrix"):
        assert not re.search(rf"^[^%]*\b{matlab_only}\(", script, flags=re.M), matlab_only
    script = script.replace("http://localhost:8000", daemon.base)
    script += CLAIMS.format(base=daemon.base, scan=SCAN, token_line=token_line(code))

    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, body in STUBS.items():
        (stubs / f"{name}.m").write_text(body)
    (tmp_path / "readme_example.m").write_text(
        f"warning('off', 'Octave:shadowed-function');\naddpath('{stubs}');\n{script}")
    out = subprocess.run(
        [octave_cli, "--no-gui", "--quiet", "--no-window-system", "--no-history", "--norc", "readme_example.m"],
        cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr
    got = scipy.io.loadmat(tmp_path / "out.mat", simplify_cells=True)

    # the JSON metadata, decoded
    meta = daemon.get(f"/meta/{SCAN}.json").json()
    for m in (got["meta"], got["meta_tok"]):  # the second sent the README's Authorization header
        assert (m["grid"]["vert"], m["grid"]["horz"]) == (meta["grid"]["vert"], meta["grid"]["horz"]) == (6, 8)
        assert list(m["frame_shape"]) == meta["frame_shape"] == [64, 72]
        assert m["dtype"] == meta["dtype"] == "uint16"

    # the darkfield map: lines x points, exactly numpy's values; what imagesc was given; the attrs
    q = f"/darkfield/{SCAN}.npy?rmin=8&rmax=25"
    s = got["s"]
    for name in ("darkfield", "transmission"):
        want = npy(daemon, f"{q}&output={name}")
        assert want.shape == (6, 8)
        assert s[name].dtype == want.dtype and s[name].shape == want.shape
        np.testing.assert_array_equal(s[name], want)
    shown = scipy.io.loadmat(tmp_path / "imagesc.mat")["c"]
    np.testing.assert_array_equal(shown, s["darkfield"])
    attrs = daemon.get(q.replace(".npy", ".json")).json()["attrs"]
    assert s["attrs"]["scan"] == attrs["scan"] == SCAN
    assert s["attrs"]["darkfield"]["rmin"] == attrs["darkfield"]["rmin"] == 8
    assert s["attrs"]["darkfield"]["rmax"] == attrs["darkfield"]["rmax"] == 25
    assert s["attrs"]["frames_missing"] == attrs["frames_missing"] == 0
    assert s["attrs"]["scan_identity"] == attrs["scan_identity"]

    # the frame from mat (rows x columns as numpy, dtype kept), from h5 (transposed back) and csv
    frame = npy(daemon, f"/frame/{SCAN}/17.npy")
    assert frame.shape == (64, 72) and frame.dtype == np.uint16
    for name in ("f", "h"):
        a = got[name]["frame"] if name == "f" else got[name]
        assert a.dtype == np.uint16 and a.shape == (64, 72), name
        np.testing.assert_array_equal(a, frame)
    assert got["f"]["attrs"]["frame"] == 17
    np.testing.assert_array_equal(got["c"], frame.astype(float))

    # (2, V, H) outputs keep numpy's index order: squeeze(s.dpc(1, :, :)) is x
    np.testing.assert_array_equal(got["dpc_x"], npy(daemon, f"/dpc/{SCAN}.npy")[0])
