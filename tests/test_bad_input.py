"""Bad input: clear JSON errors, nothing read outside the root or beyond the limits, no crash."""

from __future__ import annotations

import os
import shutil

import h5py
import hdf5plugin  # noqa: F401
import pytest
from helpers import Daemon, expect

from dada.demo import SIZES

V, H, ROWS, COLS, PER_FILE = SIZES["tiny"]
CORRUPT_FRAME = PER_FILE + 3  # in the second data file


def corrupt_chunk(path: str, index: int) -> None:
    """Overwrite one stored chunk with garbage, in place."""
    with h5py.File(path, "r") as f:
        info = f["entry/data/data"].id.get_chunk_info(index)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory, demo_root):
    base = tmp_path_factory.mktemp("bad")
    root, outside = base / "root", base / "outside"
    shutil.copytree(os.path.join(demo_root, "eiger/u16"), root / "good")
    shutil.copytree(os.path.join(demo_root, "eiger/u16"), root / "corrupt")
    shutil.copytree(os.path.join(demo_root, "eiger/u16"), root / "truncated")
    shutil.copytree(os.path.join(demo_root, "generic"), outside)
    corrupt_chunk(str(root / "corrupt/scan_0001_data_000002.h5"), CORRUPT_FRAME - PER_FILE)
    data1 = root / "truncated/scan_0001_data_000001.h5"
    os.truncate(data1, os.path.getsize(data1) * 2 // 3)
    os.symlink(outside / "stack_0001.h5", root / "escape.h5")
    os.symlink(outside, root / "door")
    return root


@pytest.fixture(scope="module")
def strict(bad_root):
    d = Daemon(["serve", str(bad_root), "--max-output-bytes", "50000", "--max-frames", "40"])
    yield d
    d.stop()


TRAVERSALS = [
    "/meta/../../../etc/passwd.json",
    "/meta/..%2f..%2f..%2fetc%2fpasswd.json",
    "/meta/%2e%2e/%2e%2e/etc/passwd.json",
    "/meta/%2E%2E%2F%2E%2E%2Foutside%2Fstack_0001.json",
    "/meta/%252e%252e/outside/stack_0001.json",
    "/meta//etc/passwd.json",
    "/meta/%2Fetc%2Fpasswd.json",
    "/meta/..%5c..%5coutside%5cstack_0001.json",
    "/meta/good/../../outside/stack_0001.json",
    "/meta/good/%2e%2e/%2e%2e/outside/stack_0001.json",
    "/meta/escape.json",
    "/meta/escape.h5.json",
    "/meta/door/stack_0001.json",
    "/frame/door/stack_0001/0.npy",
    "/sum/door/stack_0001.npy",
    "/meta/good/scan_0001%00.json",
    "/meta/~root/x.json",
    "/meta/./good/scan_0001.json",
    "/browse/..",
    "/browse/%2e%2e",
    "/browse/door",
    "/browse/../../",
    "/frame/....//....//etc/passwd/0.npy",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_attempts_are_404(strict, path):
    expect(strict, path, 404)


H5GROVE_ROUTES = ("meta", "attr", "data", "stats", "paths")
# the same tricks as h5grove's file parameter: what a route path names, less its item and format
H5GROVE_FILES = sorted({p.split("/", 2)[2].removesuffix(".json").removesuffix("/0.npy").removesuffix(".npy")
                        for p in TRAVERSALS} - {""})


@pytest.mark.parametrize("file", H5GROVE_FILES)
def test_h5grove_traversal_attempts_are_404(strict, file):
    for route in H5GROVE_ROUTES:
        for name in (file, f"{file}.h5", f"{file}_master.h5", f"{file}.dada"):
            expect(strict, f"/h5grove/{route}/?file={name}&path=/", 404)


def test_unknown_scan_and_route(strict):
    expect(strict, "/meta/nope.json", 404)
    expect(strict, "/frame/good/nothing/3.npy", 404)
    expect(strict, "/no/such/route", 404)
    expect(strict, "/browse/nothing-here", 404)


BAD_PARAMETERS = [
    ("/frame/good/scan_0001/48.npy", "n"),
    ("/frame/good/scan_0001.npy", "at"),
    ("/frame/good/scan_0001/3.npy?at=1,1", "at"),
    ("/frame/good/scan_0001.npy?at=6,0", "at"),
    ("/frame/good/scan_0001.npy?at=1", "at"),
    ("/frame/good/scan_0001.npy?at=1,2&grid=7x7", "grid"),
    ("/frame/good/scan_0001.npy?at=1,2&grid=0x7", "grid"),
    ("/frame/good/scan_0001/1.npy?cmap=rainbowz", "cmap"),
    ("/frame/good/scan_0001/1.png?vmin=5&vmax=1", "vmin"),
    ("/frame/good/scan_0001/1.png?plow=50&phigh=10", "plow"),
    ("/frame/good/scan_0001/1.png?phigh=120", "phigh"),
    ("/frame/good/scan_0001/1.png?log=perhaps", "log"),
    ("/frame/good/scan_0001/1.npy?nonsense=1", "nonsense"),
    ("/sum/good/scan_0001.npy?bin=0", "bin"),
    ("/sum/good/scan_0001.npy?bin=two", "bin"),
    ("/sum/good/scan_0001.npy?vert=6", "vert"),
    ("/sum/good/scan_0001.npy?horz=3:3", "horz"),
    ("/sum/good/scan_0001.npy?horz=0:99", "horz"),
    ("/sum/good/scan_0001.npy?horz=a:b", "horz"),
    ("/sum/good/scan_0001.npy?reduce=median", "reduce"),
    ("/composite/good/scan_0001.npy?bin=100", "bin"),
    ("/sum/good/scan_0001.npy?bin=100", "bin"),  # larger than the frame: an empty image
    ("/sum/good/scan_0001.png?vert=0&horz=0&bin=256", "bin"),
    ("/meta/good/scan_0001.png", "format"),
]


@pytest.mark.parametrize(("path", "parameter"), BAD_PARAMETERS)
def test_bad_parameters_are_400_naming_them(strict, path, parameter):
    body = expect(strict, path, 400, parameter=parameter)
    assert body["allowed"]


# What a hostile-input probe of the daemon found answered misleadingly or leniently; each is a 400 naming
# what was wrong now.
PROBED = [
    ("/frame/good/scan_0001/0.bmp", "format"),  # was 404 "no scan at …"
    ("/frame/good/scan_0001/0.PNG", "format"),
    ("/frame/good/scan_0001/0.tif", "format"),
    ("/meta/good/scan_0001.jpeg", "format"),
    ("/frame/good/scan_0001/-1.npy", "n"),  # were 404 "no scan"
    ("/frame/good/scan_0001/1e3.npy", "n"),
    ("/frame/good/scan_0001/1.0.npy", "n"),
    ("/frame/good/scan_0001/%D9%A3.npy", "n"),  # an Arabic-Indic three
    ("/sum/good/scan_0001.npy?bin=2&bin=0", "bin"),  # took the first value
    ("/frame/good/scan_0001/1.png?log=true&log=false", "log"),
    ("/sum/good/scan_0001.npy?vert=%D9%A3", "vert"),  # read as 3
    ("/sum/good/scan_0001.npy?vert=1_0", "vert"),  # read as 10
    ("/sum/good/scan_0001.npy?bin=1_0", "bin"),
    ("/frame/good/scan_0001/1.png?vmax=%D9%A3", "vmax"),
    ("/frame/good/scan_0001/1.png?vmax=0x10", "vmax"),
    ("/sum/good/scan_0001.npy?grid=2x2", "grid"),  # accepted on a 6x8 scan
    ("/sum/good/scan_0001.npy?grid=8x6", "grid"),  # the right count, not the recorded grid
]


@pytest.mark.parametrize(("path", "parameter"), PROBED)
def test_what_the_probe_found_is_400_naming_it(strict, path, parameter):
    body = expect(strict, path, 400, parameter=parameter)
    assert body["allowed"]


def test_a_grid_error_names_both_grids(strict):
    body = expect(strict, "/sum/good/scan_0001.npy?grid=2x2", 400, parameter="grid")
    assert "2x2" in body["message"] and "6x8" in body["message"]
    body = expect(strict, "/frame/good/scan_0001/0.bmp", 400, parameter="format")
    assert "npy" in body["allowed"] and "png" in body["allowed"]


def test_a_tomography_row_of_minus_one_is_named(daemon):
    body = expect(daemon, "/tomo/slice/tomo/nxtomo_0001/-1.npy", 400, parameter="row")
    assert "missing" not in body["message"]


def test_head_answers_from_the_plan(strict):
    """HEAD reads nothing: the frames counter does not move, yet the headers are the GET's."""
    def frames_read() -> float:
        text = strict.get("/metrics").body.decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("dada_frames_read_total"))

    import http.client

    before = frames_read()
    conn = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=30)
    conn.request("HEAD", "/sum/good/scan_0001.npy?vert=0:2&horz=0:3&bin=2")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    head = dict(r.getheaders())
    conn.close()
    assert frames_read() == before
    get = strict.get("/sum/good/scan_0001.npy?vert=0:2&horz=0:3&bin=2")
    assert get.headers["etag"] == head["ETag"] and get.headers["content-type"] == head["Content-Type"]
    assert frames_read() > before


def test_limits_are_413_before_any_read(strict):
    # The corrupt scan would answer 422 if a single frame were read: 413 proves the check comes first.
    body = expect(strict, "/composite/corrupt/scan_0001.npy?bin=1", 413, limit="max_output_bytes")
    assert "horz" in body["message"]
    expect(strict, "/sum/corrupt/scan_0001.npy", 413, limit="max_frames")
    expect(strict, "/frame/corrupt/scan_0001/3.json", 413, limit="max_output_bytes")  # json text is larger


def test_h5grove_limits_are_413_before_any_read(strict):
    """The corrupt chunk would answer 422 if it were read: 413 proves the check comes first."""
    data = "/h5grove/data/?file=corrupt/scan_0001_data_000002.h5&path=/entry/data/data"
    expect(strict, data, 413, limit="max_output_bytes")
    expect(strict, data.replace("/data/?", "/stats/?"), 413, limit="max_output_bytes")
    expect(strict, data + "&selection=0:4&format=json", 413, limit="max_output_bytes")  # json text is larger
    expect(strict, "/h5grove/meta/?file=corrupt/scan_0001.dada&path=/darkfield", 413, limit="max_frames")
    frame = f"{data}&selection={CORRUPT_FRAME - PER_FILE}&format=bin"
    assert "scan_0001_data_000002.h5" in expect(strict, frame, 422)["message"]
    assert strict.get(f"{data}&selection={CORRUPT_FRAME - PER_FILE - 1}&format=bin").status == 200


def test_h5grove_truncated_file_is_422(strict):
    statuses = {strict.get(f"/h5grove/{route}/?file=truncated/scan_0001_data_000001.h5&path=/entry/data/data"
                           f"&selection={n}").status for route in ("meta", "data") for n in range(PER_FILE)}
    assert 422 in statuses
    assert statuses <= {200, 422}


def test_corrupt_chunk_is_422_naming_the_frame(strict):
    expect(strict, f"/frame/corrupt/scan_0001/{CORRUPT_FRAME}.npy", 422, frame=CORRUPT_FRAME)
    expect(strict, "/sum/corrupt/scan_0001.npy?vert=0:5", 422, frame=CORRUPT_FRAME)
    assert strict.get(f"/frame/corrupt/scan_0001/{CORRUPT_FRAME - 1}.npy").status == 200


def test_truncated_file_is_422(strict):
    statuses = {strict.get(f"/frame/truncated/scan_0001/{n}.npy").status for n in range(PER_FILE)}
    assert 422 in statuses
    assert statuses <= {200, 422}


def test_process_keeps_serving(strict):
    for path, _ in BAD_PARAMETERS[:5]:
        strict.get(path)
    for path in TRAVERSALS[:5]:
        strict.get(path)
    strict.get(f"/frame/corrupt/scan_0001/{CORRUPT_FRAME}.npy")
    assert strict.alive()
    assert strict.get("/frame/good/scan_0001/0.npy").status == 200
