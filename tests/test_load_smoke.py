"""A short run of benchmarks/load.py: many clients on cached, uncached and heavy routes at once give no
error, and the daemon's memory stays within the bounds its configuration states. The minutes-long run
is the benchmark's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

LOAD = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "load.py")


def test_load_smoke_run_has_no_errors_and_bounded_memory():
    out = subprocess.run([sys.executable, LOAD, "--seconds", "12", "--clients", "12", "--size", "tiny", "--json"],
                         capture_output=True, text=True, timeout=240)
    assert out.stdout, out.stderr[-3000:]
    figures = json.loads(out.stdout)
    assert figures["errors"] == 0, figures["kinds"]
    assert len(figures["kinds"]) == 11 and all(k["requests"] for k in figures["kinds"].values()), figures["kinds"]
    m = figures["memory"]
    assert m["end_MiB"] <= m["end_bound_MiB"] and m["peak_MiB"] <= m["peak_bound_MiB"], m
    assert figures["ok"] and out.returncode == 0
