"""Matlab .mat (v5): every array as a variable, attributes as the struct ``attrs``."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import scipy.io

from dada.encoders.json import jsonable
from dada.endpoint import Result

NAME = "mat"
CONTENT_TYPE = "application/x-matlab-data"


def _varname(name: str) -> str:
    """A valid Matlab identifier (letters first, at most 63 characters)."""
    s = re.sub(r"\W", "_", name)
    return (s if s[:1].isalpha() else f"v_{s}")[:63]


def _matable(v: Any) -> Any:
    v = jsonable(v)
    if v is None:
        return np.zeros((0, 0))
    if isinstance(v, dict):
        return {_varname(k): _matable(x) for k, x in v.items()}
    if isinstance(v, list):
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            return np.asarray(v, dtype=float)
        return np.array([_matable(x) for x in v], dtype=object)
    return v


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    variables: dict[str, Any] = {_varname(k): v for k, v in result.arrays.items()}
    attrs = {k: v for k, v in result.attrs.items()}
    variables["attrs"] = _matable(attrs)
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=True, oned_as="column")
    return buf.getvalue()
