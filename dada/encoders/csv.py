"""CSV: a 2-D array, one row per line, no header (Matlab's readmatrix reads it as is)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from dada.endpoint import Result

NAME = "csv"
CONTENT_TYPE = "text/csv"


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    a = result.view
    if a.dtype.kind in "iub":
        fmt = "%d"
    else:
        fmt = "%.9g" if a.dtype.itemsize <= 4 else "%.17g"
    buf = io.StringIO()
    np.savetxt(buf, a, fmt=fmt, delimiter=",")
    return buf.getvalue().encode()
