"""Every answer current: each input of an answer changed in place gives a new, correct answer on the next request.

Inputs: a usermask file edited in place, a scan's data changed, a symlinked scan retargeted, an
``X_master.h5`` appearing beside ``X.h5``, a folder gaining a second scan, ``dataset_paths`` changed
across a restart. Each is asked through the embedded default (``dada serve``, its memory and disk levels,
hot answers armed before the change) and through a front with a disk cache restarted in between (the disk
must not hand back the old answer). Every new answer is checked against the numpy reference, and each
change is checked to change the reference, so no test passes by accident. Also: HTTP validators, ``private``
for tokened answers, over-long names as 404 that dada.client does not retry, and cache entries of another
format version never read.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from helpers import Daemon, expect, free_port, require_module
from stxm_reference import reference
from test_cluster import metric
from test_stxm import load

from dada.cache.disk import DiskCache
from dada.cache.keys import BLOCK_FORMAT, RESULT_FORMAT, block_key, named_files, result_key
from dada.client import Client, ServerError
from dada.cluster.blocks import blocks_of
from dada.encoders import stored
from dada.endpoint import Result
from dada.registry import ENDPOINTS
from dada.sources.catalog import Catalog
from dada.stxm import wire
from dada.stxm.channel import Partial

SCAN = "eiger/u16/scan_0001"
RING = {"rmin": 6.0, "rmax": 24.0}
DARKFIELD = next(ep for ep in ENDPOINTS if ep.name == "darkfield")
PAST_RECHECK = 0.2  # s: past the daemons' recheck interval (recheck_seconds, 0.05 s)


@dataclass
class World:
    root: str  # the data root every daemon of the module serves
    demo: str  # the demo scans, copied from
    embedded: Daemon  # dada serve: local nodes, memory and disk levels, live through every change
    node: Daemon  # the node behind the restarted fronts
    tmp: str

    def front(self, *cache: str) -> Daemon:
        """A front over the node with a disk cache (or the ``cache`` flags given): started again on the same
        cache, it must not answer stale."""
        return Daemon(["serve", self.root, "--nodes", self.node.base, "--block-frames", "8", *cache])


@pytest.fixture(scope="module")
def world(demo_root, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("freshness")
    root = tmp / "root"
    root.mkdir()
    node = Daemon(["node", str(root), "--threads", "1"])
    embedded = Daemon(["serve", str(root), "--block-frames", "8", "--cache-dir", str(tmp / "embedded-cache")])
    yield World(str(root), demo_root, embedded, node, str(tmp))
    embedded.stop()
    node.stop()


def copy_scan(world: World, folder: str, name: str = "scan_0001") -> str:
    """The demo's u16 Eiger scan (master and data files) copied into ``folder`` below the root."""
    dst = os.path.join(world.root, folder)
    os.makedirs(dst, exist_ok=True)
    src = os.path.join(world.demo, "eiger/u16")
    for f in sorted(os.listdir(src)):
        if f.startswith("scan_0001"):
            shutil.copy2(os.path.join(src, f), os.path.join(dst, f.replace("scan_0001", name, 1)))
    return dst


def eiger_darkfield(folder: str, usermask: np.ndarray | None = None, **given: float) -> np.ndarray:
    """The numpy reference's darkfield map of the Eiger scan in ``folder`` (real path), as the files are now."""
    frames, bad, cutoff, cx, cy, (v, h) = load(folder, "scan_0001")
    if usermask is not None:
        bad = bad | (usermask != 0)
    ref = reference(frames, bad, cutoff, given.get("cx", cx), given.get("cy", cy), rdpc=5.0, nsectors=12, nbins=9,
                    **RING)
    return ref["darkfield"].reshape(v, h)


def plain_darkfield(frames: np.ndarray, cx: float, cy: float, vh: tuple[int, int]) -> np.ndarray:
    """The reference for a plain HDF5 stack: no pixel mask, no saturation."""
    ref = reference(frames, np.zeros(frames.shape[1:], bool), np.inf, cx, cy, rdpc=5.0, nsectors=12, nbins=9, **RING)
    return ref["darkfield"].reshape(vh)


def npy(d: Daemon, url: str, headers: dict[str, str] | None = None) -> np.ndarray:
    r = d.get(url, headers)
    assert r.status == 200, (url, r.status, r.body[:300])
    return np.load(io.BytesIO(r.body))


def darkfield_url(path: str, **query: object) -> str:
    q = "&".join(f"{k}={v}" for k, v in {**RING, **query}.items())
    return f"/darkfield/{path}.npy?{q}"


def differs(before: np.ndarray, after: np.ndarray) -> None:
    """The change changes the reference: an answer that stayed stale could not pass as the new one."""
    assert before.shape == after.shape and not np.allclose(before, after, equal_nan=True)


def check_change(world: World, tag: str, url: str, before: np.ndarray, change: Callable[[], np.ndarray],
                 cache: tuple[str, ...] = ()) -> None:
    """``url`` answers ``before``; after ``change()`` (which returns the new reference) the live embedded
    daemon and a restarted front over the same cache (a disk cache unless ``cache`` says otherwise) both
    answer the new reference."""
    cache = cache or ("--cache-dir", os.path.join(world.tmp, f"front-cache-{tag}"))
    for _ in range(2):  # the second answer comes from the hot path and the caches
        np.testing.assert_allclose(npy(world.embedded, url), before, rtol=1e-12)
    f = world.front(*cache)
    try:
        np.testing.assert_allclose(npy(f, url), before, rtol=1e-12)
        np.testing.assert_allclose(npy(f, url), before, rtol=1e-12)
    finally:
        f.stop()
    after = change()
    differs(before, after)
    time.sleep(PAST_RECHECK)
    for _ in range(2):
        np.testing.assert_allclose(npy(world.embedded, url), after, rtol=1e-12)
    f = world.front(*cache)
    try:
        np.testing.assert_allclose(npy(f, url), after, rtol=1e-12)
    finally:
        f.stop()


# -- each input changed in place --------------------------------------------------------------------------------


@dataclass
class MaskCase:
    scan: str  # real folder of the scan
    url: str
    before: np.ndarray
    edit: Callable[[], np.ndarray]  # edits the mask in place; the new reference
    right: np.ndarray  # the mask after the edit


def mask_case(world: World, folder: str) -> MaskCase:
    """A scan and a usermask (left columns masked) that ``edit`` rewrites in place (right columns masked)."""
    scan = copy_scan(world, folder)
    masks = os.path.join(scan, "masks")
    os.makedirs(masks)
    shape = load(scan, "scan_0001")[0].shape[1:]
    left, right = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    left[:, :30] = 1
    right[:, 40:] = 1
    path = os.path.join(masks, "m.npy")
    np.save(path, left)

    def edit() -> np.ndarray:
        np.save(path, right)  # the same size, the same inode: only the contents and mtime change
        return eiger_darkfield(scan, right)

    url = darkfield_url(f"{folder}/scan_0001", usermask=f"{folder}/masks/m.npy")
    return MaskCase(scan, url, eiger_darkfield(scan, left), edit, right)


def test_a_usermask_edited_in_place_changes_the_answer_and_its_etag(world):
    case = mask_case(world, "mask")
    url, scan, right = case.url, case.scan, case.right
    old_tag = world.embedded.get(url).headers["etag"]
    check_change(world, "mask", url, case.before, case.edit)
    r = world.embedded.get(url, {"If-None-Match": old_tag})
    assert r.status == 200 and r.headers["etag"] != old_tag  # the old tag no longer validates
    np.testing.assert_allclose(np.load(io.BytesIO(r.body)), eiger_darkfield(scan, right), rtol=1e-12)
    again = world.embedded.get(url, {"If-None-Match": r.headers["etag"]})
    assert again.status == 304 and again.headers["etag"] == r.headers["etag"]


def test_a_usermask_edited_in_place_changes_the_answer_from_aerospike_too(world):
    """Fronts sharing an Aerospike cluster (no disk cache): the shared level must not outlive the mask either."""
    require_module("aerospike", "pip install -e '.[cluster]'")
    import test_cache

    server = test_cache.ServerProcess(free_port())
    server.start()
    try:
        case = mask_case(world, "aerospike")
        flags = ("--cache-dir", "none", "--aerospike", f"127.0.0.1:{server.port}")
        check_change(world, "aerospike", case.url, case.before, case.edit, flags)
        f = world.front(*flags)  # the level is in use: a front with nothing in memory reads the new answer there
        try:
            np.testing.assert_allclose(npy(f, case.url), eiger_darkfield(case.scan, case.right), rtol=1e-12)
            assert metric(f, "dada_cache", level="aerospike", counter="hits") > 0
        finally:
            f.stop()
    finally:
        server.kill()


def test_changed_scan_data_give_a_new_answer(world):
    scan = copy_scan(world, "data")

    def rewrite() -> np.ndarray:
        with h5py.File(os.path.join(scan, "scan_0001_data_000002.h5"), "r+") as h:
            frames = h["entry/data/data"]
            frames[3] = frames[3] // 2
            frames[11] = frames[11] * 2
        return eiger_darkfield(scan)

    check_change(world, "data", darkfield_url("data/scan_0001"), eiger_darkfield(scan), rewrite)


def test_a_retargeted_symlink_gives_the_new_target_s_answer(world):
    a = copy_scan(world, "link/a")
    b = copy_scan(world, "link/b")
    with h5py.File(os.path.join(b, "scan_0001_data_000001.h5"), "r+") as h:
        frames = h["entry/data/data"]
        frames[:] = frames[:][::-1]  # b: another scan, the same shape
    current = os.path.join(world.root, "link", "current")
    os.symlink("a", current)

    def retarget() -> np.ndarray:
        os.symlink("b", current + ".new")
        os.replace(current + ".new", current)
        return eiger_darkfield(b)

    check_change(world, "link", darkfield_url("link/current/scan_0001"), eiger_darkfield(a), retarget)


def test_a_master_appearing_beside_a_plain_file_takes_over_its_name(world):
    """``X`` names ``X_master.h5`` before ``X.h5`` (the catalog's order): once the master appears, it answers."""
    eiger = copy_scan(world, "appear/eiger")
    frames, _, _, cx, cy, vh = load(eiger, "scan_0001")
    folder = os.path.join(world.root, "appear")
    plain = frames[::-1].copy()
    with h5py.File(os.path.join(folder, "X.h5"), "w") as f:
        f["entry/data/data"] = plain
    url = darkfield_url("appear/X", grid=f"{vh[0]}x{vh[1]}", cx=cx, cy=cy)

    def appear() -> np.ndarray:
        for name in os.listdir(eiger):
            shutil.copy2(os.path.join(eiger, name), os.path.join(folder, name.replace("scan_0001_master", "X_master")))
        return eiger_darkfield(eiger)  # X_master.h5 is a copy of that scan's master, over the same data files

    check_change(world, "appear", url, plain_darkfield(plain, cx, cy, vh), appear)


def test_a_folder_gaining_a_second_scan_no_longer_answers_for_one(world):
    folder = copy_scan(world, "gains")
    url = darkfield_url("gains")
    want = eiger_darkfield(folder)
    for _ in range(2):
        np.testing.assert_allclose(npy(world.embedded, url), want, rtol=1e-12)
    shutil.copy2(os.path.join(folder, "scan_0001_master.h5"), os.path.join(folder, "scan_0009_master.h5"))
    time.sleep(PAST_RECHECK)
    body = expect(world.embedded, url, 404)
    assert "2 scans" in body["message"] and sorted(body["scans"]) == ["scan_0001", "scan_0009"]


def test_changed_dataset_paths_across_a_restart_give_the_other_dataset_s_answer(world, tmp_path):
    """The configuration chooses which dataset holds the frames: the disk cache must not outlive that choice."""
    frames, _, _, cx, cy, vh = load(os.path.join(world.demo, "eiger/u16"), "scan_0001")
    root = tmp_path / "root"
    root.mkdir()
    with h5py.File(root / "two.h5", "w") as f:
        f["a/frames"] = frames
        f["b/frames"] = frames[::-1]
    url = darkfield_url("two", grid=f"{vh[0]}x{vh[1]}", cx=cx, cy=cy)
    cache = str(tmp_path / "cache")
    answers = {}
    for dataset in ("a/frames", "b/frames"):
        config = tmp_path / f"{dataset[0]}.toml"
        config.write_text(f'dataset_paths = ["{dataset}"]\n')
        d = Daemon(["serve", str(root), "--config", str(config), "--local-nodes", "1", "--block-frames", "8",
                    "--cache-dir", cache])
        try:
            answers[dataset] = npy(d, url)
        finally:
            d.stop()
    np.testing.assert_allclose(answers["a/frames"], plain_darkfield(frames, cx, cy, vh), rtol=1e-12)
    np.testing.assert_allclose(answers["b/frames"], plain_darkfield(frames[::-1].copy(), cx, cy, vh), rtol=1e-12)
    differs(answers["a/frames"], answers["b/frames"])


# -- HTTP -------------------------------------------------------------------------------------------------------


def test_complete_scans_are_fresh_briefly_then_validated(world):
    copy_scan(world, "http")
    r = world.embedded.get(darkfield_url("http/scan_0001"))
    assert r.status == 200 and r.headers["cache-control"] == "public, max-age=5"
    again = world.embedded.get(darkfield_url("http/scan_0001"), {"If-None-Match": r.headers["etag"]})
    assert again.status == 304 and again.headers["cache-control"] == "public, max-age=5"


def test_an_answer_that_needed_a_token_is_private(world, tmp_path):
    copy_scan(world, "tokened")
    token = "a-token-for-the-tokened-folder"
    config = tmp_path / "dada.toml"
    config.write_text(f'[[tokens]]\nname = "t"\nsha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
                      'paths = ["tokened"]\n')
    f = Daemon(["serve", world.root, "--config", str(config), "--nodes", world.node.base, "--cache-dir",
                str(tmp_path / "cache")])
    auth = {"Authorization": f"Bearer {token}"}
    url = darkfield_url("tokened/scan_0001")
    want = eiger_darkfield(os.path.join(world.root, "tokened"))
    try:
        for _ in range(2):  # computed, then from the hot path
            r = f.get(url, auth)
            assert r.status == 200 and r.headers["cache-control"] == "private, max-age=5", r.headers
            np.testing.assert_allclose(np.load(io.BytesIO(r.body)), want, rtol=1e-12)
        by_query = f.get(f"{url}&token={token}")
        assert by_query.status == 200 and by_query.headers["cache-control"] == "private, max-age=5"
        not_modified = f.get(url, {**auth, "If-None-Match": r.headers["etag"]})
        assert not_modified.status == 304 and not_modified.headers["cache-control"] == "private, max-age=5"
    finally:
        f.stop()


LONG = "a" * 300  # longer than any file system's name limit (255 bytes on Linux's)


@pytest.mark.parametrize("path", [
    f"/darkfield/{LONG}.npy",
    f"/darkfield/eiger/{LONG}/scan_0001.npy",
    f"/darkfield/{'b' * 250}.npy",  # the name fits, the name with _master.h5 does not
    f"/meta/{LONG}.json",
    f"/browse/{LONG}",
])
def test_an_overlong_name_is_a_404_not_a_storage_outage(world, path):
    body = expect(world.embedded, path, 404, error="not_found")
    assert "does not answer" not in body["message"]


def test_an_overlong_usermask_name_is_a_400_naming_it(world):
    copy_scan(world, "longmask")
    expect(world.embedded, darkfield_url("longmask/scan_0001", usermask=LONG), 400, parameter="usermask")


def test_the_client_does_not_retry_an_overlong_name(world):
    client = Client(world.embedded.base, progress=False, retries=5)
    before = metric(world.embedded, "dada_requests_total", endpoint="darkfield", status="404")
    with pytest.raises(ServerError) as err:
        client.darkfield(LONG)
    assert err.value.status == 404 and "longer than the storage allows" in err.value.message
    assert metric(world.embedded, "dada_requests_total", endpoint="darkfield", status="404") == before + 1  # once


# -- format versions --------------------------------------------------------------------------------------------


def test_a_result_of_another_format_version_is_recomputed_not_read(world, tmp_path):
    """A front's disk entry is found under the key the rule computes; a changed entry under the current
    version is served (the key is what is read), the same entry under another version is not."""
    folder = copy_scan(world, "version")
    masks = os.path.join(folder, "masks")
    os.makedirs(masks)
    mask = np.zeros(load(folder, "scan_0001")[0].shape[1:], np.uint8)
    mask[:8] = 1
    np.save(os.path.join(masks, "top.npy"), mask)
    query = {"rmin": "6.0", "rmax": "24.0", "usermask": "version/masks/top.npy"}
    url = darkfield_url("version/scan_0001", usermask=query["usermask"])
    want = eiger_darkfield(folder, mask)
    first = answered_once(world, url, want, str(tmp_path / "first"))
    catalog = Catalog({"": world.root})
    args = DARKFIELD.model.parse(query)
    target = DARKFIELD.resolve(catalog, "version/scan_0001", None)
    named = named_files(DARKFIELD, catalog, args)

    def key(version: int) -> str:
        return result_key(DARKFIELD, target, args, named, version)

    kept = DiskCache(first, 1 << 30).get(key(RESULT_FORMAT))
    assert kept is not None  # the front kept its result under the key the rule computes
    result = stored.load(kept)
    np.testing.assert_allclose(result.primary, want, rtol=1e-12)
    poisoned = stored.dump(Result({k: np.full_like(v, 7.0) for k, v in result.arrays.items()}, result.attrs))
    for version, served in ((RESULT_FORMAT, "poisoned"), (RESULT_FORMAT - 1, "reference")):
        cache = str(tmp_path / f"v{version}")
        DiskCache(cache, 1 << 30).put(key(version), poisoned)
        f = world.front("--cache-dir", cache)
        try:
            got = npy(f, url)
        finally:
            f.stop()
        if served == "poisoned":
            assert np.all(got == 7.0)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12)


def answered_once(world, url: str, want: np.ndarray, cache: str) -> str:
    """A front with a disk cache in ``cache`` answers ``url`` (checked), then stops: its entries are on disk."""
    f = world.front("--cache-dir", cache)
    try:
        np.testing.assert_allclose(npy(f, url), want, rtol=1e-12)
    finally:
        f.stop()
    return cache


def test_a_block_partial_of_another_format_version_is_recomputed_not_read(world, tmp_path):
    """The same for the front's block partials: found under the rule's key, read under the current version
    (a changed entry shows in the answer), never under another."""
    folder = copy_scan(world, "blocks")
    query = {"rmin": "6.0", "rmax": "24.0"}
    url = darkfield_url("blocks/scan_0001")
    want = eiger_darkfield(folder)
    first = answered_once(world, url, want, str(tmp_path / "first"))
    catalog = Catalog({"": world.root})
    scan = catalog.scan("blocks/scan_0001")
    p = DARKFIELD.pass_for(scan, DARKFIELD.model.parse(query), catalog)
    blocks, _ = blocks_of(scan, np.arange(scan.nframes), 8)  # the fronts' --block-frames
    kept = [DiskCache(first, 1 << 30).get(block_key(b, 8, p, 0)) for b in blocks]
    assert len(blocks) == 6 and all(k is not None for k in kept)  # under the keys the rule computes
    doubled = []
    for data in kept:
        m = wire.read(data)
        doubled.append(wire.record(Partial({**m.arrays, "sum": m["sum"] * 2}, m.present)))
    for version in (BLOCK_FORMAT, BLOCK_FORMAT - 1):
        cache = str(tmp_path / f"v{version}")
        store = DiskCache(cache, 1 << 30)
        for b, data in zip(blocks, doubled, strict=True):
            store.put(block_key(b, 8, p, 0, version), data)
        f = world.front("--cache-dir", cache)
        try:
            got = npy(f, url)
            computed = sum(n["done"] for n in f.get("/healthz").json()["nodes"])
        finally:
            f.stop()
        if version == BLOCK_FORMAT:  # read: every block from the cache, its sums doubled
            np.testing.assert_allclose(got, 2 * want, rtol=1e-12)
            assert computed == 0
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12)
            assert computed == len(blocks)
