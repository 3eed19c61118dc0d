"""Access control against real daemons: tokens for subtrees, 401/403 on every route, listings that hide
what a token cannot reach, caches that never cross tokens, nodes that answer their front only, CORS."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.parse

import pytest
from helpers import Daemon, expect, http_get

U16 = "eiger/u16/scan_0001"
U32 = "eiger/u32/scan_0002"
TOMO = "tomo/nxtomo_0001"
TOKEN_A, TOKEN_B = "a-token-for-the-u16-group", "b-token-for-tomography"
sha = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731


def write_config(path, **extra: str) -> str:
    text = "".join(f"{k} = {v}\n" for k, v in extra.items())
    text += f'[[tokens]]\nname = "u16"\nsha256 = "{sha(TOKEN_A)}"\npaths = ["eiger/u16"]\n'
    text += f'[[tokens]]\nname = "tomo"\nsha256 = "{sha(TOKEN_B)}"\npaths = ["tomo", "generic"]\n'
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def guarded(demo_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    cache = tmp / "cache"
    config = write_config(tmp / "dada.toml", cors_origins='["https://gui.example.org"]')
    d = Daemon(["serve", demo_root, "--config", config, "--cache-dir", str(cache)])
    d.cache_dir = str(cache)
    yield d
    d.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ROUTES = [
    "/browse/", "/browse/eiger", f"/meta/{U16}.json", f"/frame/{U16}/0.npy", f"/frame/{U16}.npy?at=1,2",
    f"/sum/{U16}.npy", f"/composite/{U16}.npy", f"/darkfield/{U16}.npy", f"/dpc/{U16}.npy",
    f"/azimuthal/{U16}.npy", f"/radial/{U16}.npy", f"/stxm/{U16}.h5", f"/tomo/sinogram/{TOMO}/3.npy",
    f"/tomo/slice/{TOMO}/3.npy", f"/tomo/center/{TOMO}.json", "/progress/some-request",
]


@pytest.mark.parametrize("route", ROUTES)
def test_every_data_route_needs_a_token(guarded, route):
    body = expect(guarded, route, 401, error="unauthorized")
    assert "token" in body["message"]
    assert guarded.get(route).headers["www-authenticate"].startswith("Bearer")
    r = guarded.get(route, headers=bearer("not-a-token"))
    assert r.status == 401 and r.json()["error"] == "unauthorized"


def test_open_routes_stay_open(guarded):
    for route in ("/", "/gui/main.js", "/api", "/api/openapi.json", "/healthz", "/metrics"):
        assert guarded.get(route).status == 200, route


@pytest.mark.parametrize("route", [f"/meta/{U32}.json", f"/frame/{U32}/0.npy", f"/sum/{U32}.npy",
                                   f"/darkfield/{U32}.npy", f"/stxm/{U32}.h5", f"/composite/{U32}.png",
                                   f"/tomo/slice/{TOMO}/3.npy", f"/tomo/center/{TOMO}.json", "/browse/live",
                                   f"/darkfield/{U16}.npy?usermask=generic/stack_0001.h5"])
def test_outside_the_subtrees_is_forbidden(guarded, route):
    r = guarded.get(route, headers=bearer(TOKEN_A))
    assert r.status == 403 and r.json()["error"] == "forbidden", (route, r.body)


def test_inside_the_subtrees_answers_header_or_query(guarded):
    by_header = guarded.get(f"/darkfield/{U16}.npy?rmin=5", headers=bearer(TOKEN_A))
    by_query = guarded.get(f"/darkfield/{U16}.npy?rmin=5&token={TOKEN_A}")
    assert by_header.status == by_query.status == 200
    assert by_header.body == by_query.body
    assert by_header.headers["etag"] == by_query.headers["etag"]  # the token is no part of what names it
    assert guarded.get(f"/tomo/slice/{TOMO}/3.npy", headers=bearer(TOKEN_B)).status == 200


def test_listings_hide_what_a_token_cannot_reach(guarded):
    top = guarded.get("/browse/", headers=bearer(TOKEN_A)).json()
    assert top["folders"] == ["eiger"]
    eiger = guarded.get("/browse/eiger", headers=bearer(TOKEN_A)).json()
    assert eiger["folders"] == ["u16"]
    assert [s["path"] for s in guarded.get("/browse/eiger/u16", headers=bearer(TOKEN_A)).json()["scans"]] == [U16]
    assert guarded.get("/browse/", headers=bearer(TOKEN_B)).json()["folders"] == ["generic", "tomo"]
    assert guarded.get("/browse/eiger", headers=bearer(TOKEN_B)).status == 403


def test_a_cached_answer_is_never_served_to_another_token(guarded):
    url = f"/darkfield/{U16}.png?rmin=7"
    for _ in range(3):  # the third is a hot answer from memory
        assert guarded.get(url, headers=bearer(TOKEN_A)).status == 200
    assert guarded.get(url, headers=bearer(TOKEN_B)).status == 403
    assert guarded.get(url).status == 401
    assert guarded.get(url + f"&token={TOKEN_B}").status == 403


def test_a_progress_stream_belongs_to_its_token(guarded):
    rid = "access-test-stream"
    r = guarded.get(f"/darkfield/{U16}.npy?rmin=6", headers={**bearer(TOKEN_A), "X-Request-Id": rid})
    assert r.status == 200
    assert guarded.get(f"/progress/{rid}", headers=bearer(TOKEN_B)).status == 403
    stream = guarded.get(f"/progress/{rid}", headers=bearer(TOKEN_A)).body.decode()
    assert "event: end" in stream


def test_the_token_is_never_stored_or_logged(guarded):
    guarded.get(f"/stxm/{U16}.h5?token={TOKEN_A}&darkfield.rmin=9")
    guarded.get(f"/radial/{U16}.npy?nbins=9", headers=bearer(TOKEN_A))
    secrets = [TOKEN_A.encode(), sha(TOKEN_A).encode()]
    found = []
    for folder, _, files in os.walk(guarded.cache_dir):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            found += [name for s in secrets if s in data or s.decode() in name]
    assert not found and os.listdir(guarded.cache_dir)  # something was cached, nothing holds the token


def test_cors_only_for_configured_origins(guarded, daemon):
    ok = {"Origin": "https://gui.example.org", **bearer(TOKEN_A)}
    r = guarded.get(f"/meta/{U16}.json", headers=ok)
    assert r.status == 200 and r.headers["access-control-allow-origin"] == "https://gui.example.org"
    assert "X-Dada-View" in r.headers["access-control-expose-headers"]
    other = guarded.get(f"/meta/{U16}.json", headers={"Origin": "https://evil.example", **bearer(TOKEN_A)})
    assert "access-control-allow-origin" not in other.headers
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=10)
    conn.request("OPTIONS", f"/meta/{U16}.json", headers={"Origin": "https://gui.example.org",
                                                          "Access-Control-Request-Method": "GET",
                                                          "Access-Control-Request-Headers": "authorization"})
    pre = conn.getresponse()
    assert pre.status == 204 and "Authorization" in pre.getheader("Access-Control-Allow-Headers")
    conn.close()
    # off by default: the embedded demo sends no CORS headers at all
    assert "access-control-allow-origin" not in daemon.get("/api", headers={"Origin": "https://x.org"}).headers


def test_the_open_demo_needs_no_token_and_ignores_one(daemon):
    assert daemon.get(f"/meta/{U16}.json").status == 200
    assert daemon.get(f"/meta/{U16}.json?token=anything").status == 200


def test_local_nodes_answer_their_front_only(guarded):
    nodes = guarded.get("/healthz").json()["nodes"]
    assert nodes
    for node in nodes:
        port = urllib.parse.urlsplit(node["url"]).port
        job = f"/_block/{U16}/0-8.part?channels=darkfield&cx=30.0&cy=30.0"
        r = http_get(port, job)
        assert r.status == 403 and r.json()["error"] == "forbidden"
        assert http_get(port, f"/meta/{U16}.json").status == 403  # not a back door to the data either
        assert http_get(port, "/healthz").status == 200
    assert guarded.get(f"/darkfield/{U16}.npy?rmin=4", headers=bearer(TOKEN_A)).status == 200  # the front can


def test_configured_nodes_need_the_shared_secret(demo_root, tmp_path):
    node = Daemon(["node", demo_root, "--threads", "1"], env={"DADA_NODE_SECRET": "s3cret-of-the-cluster"})
    try:
        assert node.get(f"/_block/{U16}/0-8.part?channels=darkfield").status == 403
        assert node.get(f"/_block/{U16}/0-8.part?channels=darkfield",
                        headers={"X-Dada-Node-Secret": "wrong"}).status == 403
        front = Daemon(["serve", demo_root, "--nodes", node.base, "--cache-dir", "none"],
                       env={"DADA_NODE_SECRET": "s3cret-of-the-cluster"})
        try:
            assert front.get(f"/darkfield/{U16}.npy").status == 200
        finally:
            front.stop()
        stranger = Daemon(["serve", demo_root, "--nodes", node.base, "--cache-dir", "none"])
        try:  # a front without the secret gets the node's refusal, named
            r = stranger.get(f"/darkfield/{U16}.npy?rmin=3")
            assert r.status == 502 and "403" in json.dumps(r.json())
        finally:
            stranger.stop()
    finally:
        node.stop()


def test_dada_token_makes_a_token_and_its_config(demo_root, tmp_path):
    """``dada token``: the printed lines configure the printed token; an empty path grants the whole root."""
    root = tmp_path / "data"
    shutil.copytree(os.path.join(demo_root, "eiger/u16"), root / "beamtime")
    out = subprocess.run([sys.executable, "-m", "dada.cli", "token", "staff", ""], capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    token = lines[1]
    config = tmp_path / "all.toml"
    config.write_text("\n".join(line for line in lines if not line.startswith("#") and line != token))
    assert token not in config.read_text() and sha(token) in config.read_text()
    d = Daemon(["serve", str(root), "--config", str(config), "--cache-dir", "none"])
    try:
        assert d.get("/browse/beamtime", headers=bearer(token)).json()["scans"]
        assert d.get("/browse/beamtime").status == 401
        assert d.get("/browse/beamtime", headers=bearer(token[:-1])).status == 401
    finally:
        d.stop()


def test_the_gui_asks_for_a_token_and_keeps_it_for_the_tab_only(guarded):
    from browser import chromium, shot, wait
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        driver.get(guarded.base + f"/#/darkfield/{U16}.png?rmin=8")
        dialog = wait(lambda: driver.find_element(By.ID, "token-dialog").is_displayed()
                      and driver.find_element(By.ID, "token-dialog"), 30, "the token dialog")
        shot(driver, "12-token-dialog")
        driver.find_element(By.ID, "token-input").send_keys(TOKEN_A)
        dialog.find_element(By.CSS_SELECTOR, 'button[value="ok"]').click()
        wait(lambda: driver.execute_script("return document.body.dataset.ready") == "true", 30, "the GUI")
        box = driver.find_element(By.ID, "map-box")
        wait(lambda: box.get_attribute("data-state") in ("done", "error"), 60, "the map")
        assert box.get_attribute("data-state") == "done", driver.find_element(By.ID, "error").text
        # the tree shows what the token reaches, nothing else
        assert [e.get_attribute("data-folder") for e in driver.find_elements(By.CSS_SELECTOR, "#tree > li")] \
            == ["eiger"]
        # kept for this tab only, and never in the URLs shown unless asked for
        assert driver.execute_script("return sessionStorage.getItem('dada-token')") == TOKEN_A
        assert driver.execute_script("return localStorage.length") == 0
        assert TOKEN_A not in driver.current_url
        assert TOKEN_A not in driver.find_element(By.ID, "result-url").get_attribute("value")
        assert TOKEN_A not in driver.find_element(By.ID, "snippet-curl").get_attribute("textContent")
        driver.find_element(By.ID, "with-token").click()
        assert f"token={TOKEN_A}" in driver.find_element(By.ID, "result-url").get_attribute("value")
        shot(driver, "13-token-accepted")
    finally:
        driver.quit()
    fresh = chromium()  # a new session: asked again
    try:
        fresh.get(guarded.base + "/")
        wait(lambda: fresh.find_element(By.ID, "token-dialog").is_displayed(), 30, "the dialog in a new session")
    finally:
        fresh.quit()
