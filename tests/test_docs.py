"""The README's examples run against a real daemon; /api and OpenAPI match the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from openapi_spec_validator import validate

from dada.registry import ENDPOINTS

README = (Path(__file__).parent.parent / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def urls(text: str) -> list[str]:
    return re.findall(r"'(http://localhost:8000[^']*)'", text)


def run_python(code: str, daemon) -> str:
    code = code.replace("http://localhost:8000", daemon.base)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_readme_python_example_runs(daemon):
    (code,) = [b for b in blocks("python") if "urllib" in b]
    assert run_python(code, daemon) == "(64, 72) uint16 (32, 36)"


def test_readme_client_example_runs(daemon):
    """The dada.client block, with what its comments claim checked."""
    (code,) = [b for b in blocks("python") if "dada.client" in b]
    check = ("\nprint(a.data.shape, a.attrs['darkfield']['rmin'], a.url.split('?')[0].endswith('.h5'),"
             " both.arrays['dpc.dpc'].shape, frame.shape, dict(c.meta('eiger/u16/scan_0001')['grid'])['vert'])")
    assert run_python(code + check, daemon) == "(4, 8) 12.0 True (2, 6, 8) (64, 72) 6"


def test_readme_curl_urls_answer(daemon):
    found = [u for b in blocks("sh") for u in urls(b)]
    assert len(found) >= 4
    for u in found:
        r = daemon.get(u.removeprefix("http://localhost:8000"))
        assert r.status == 200, (u, r.body)


def test_readme_matlab_urls_give_formats_matlab_reads(daemon):
    (code,) = blocks("matlab")
    found = urls(code)
    assert len(found) == 4
    matlab_types = {"application/json", "application/x-hdf5", "application/x-matlab-data", "image/tiff"}
    for u in found:
        r = daemon.get(u.removeprefix("http://localhost:8000"))
        assert r.status == 200, (u, r.body)
        assert r.content_type in matlab_types
    # the h5 file holds the dataset the example reads, the mat file the variables it names
    import io

    import h5py
    import scipy.io

    with h5py.File(io.BytesIO(daemon.get("/frame/eiger/u16/scan_0001/17.h5").body)) as f:
        assert f["/frame"].shape == (64, 72)
    m = scipy.io.loadmat(io.BytesIO(daemon.get("/sum/eiger/u16/scan_0001.mat?vert=0:3").body))
    assert "sum" in m and "attrs" in m


def test_openapi_is_valid_and_complete(daemon):
    doc = daemon.get("/api/openapi.json").json()
    validate(doc)
    for ep in ENDPOINTS:
        op = doc["paths"][ep.path_template()]["get"]
        names = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert names == {p.name for p in ep.model.params}
        assert set(op["responses"]) >= {"200", "400", "404", "413", "422"}
    for fixed in ("/api", "/api/openapi.json", "/healthz", "/metrics"):
        assert fixed in doc["paths"]


def test_api_index_lists_every_endpoint_with_schemas(daemon):
    api = daemon.get("/api").json()
    by_name = {e["name"]: e for e in api["endpoints"]}
    assert set(by_name) == {ep.name for ep in ENDPOINTS}
    bin_schema = by_name["sum"]["parameters"]["bin"]
    assert bin_schema == {"type": "integer", "description": bin_schema["description"], "minimum": 1,
                          "maximum": 256, "default": 1}
    assert by_name["frame"]["item"]["name"] == "n"
    assert "png" in by_name["frame"]["formats"] and by_name["meta"]["formats"] == ["json"]


def test_readme_routes_exist_in_openapi(daemon):
    doc = daemon.get("/api/openapi.json").json()
    for path in re.findall(r"^\| `(/[a-z]+)", README, flags=re.M):
        assert any(p.startswith(path) for p in doc["paths"]), path
