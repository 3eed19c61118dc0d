"""NumPy .npy: the primary array, dtype and shape exact."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from dada.endpoint import Result

NAME = "npy"
CONTENT_TYPE = "application/x-npy"


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(result.primary), allow_pickle=False)
    return buf.getvalue()
