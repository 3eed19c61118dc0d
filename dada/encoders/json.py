"""JSON: documents as they are; arrays as nested lists with shape, dtype and attributes.

NaN and infinities become null (JSON has no such numbers).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from dada.endpoint import Result

NAME = "json"
CONTENT_TYPE = "application/json"


def jsonable(v: Any) -> Any:
    """Plain Python values for json.dumps, with non-finite floats as None."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            return jsonable(v.astype(object).tolist())
        return v.tolist()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return jsonable(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def dumps(doc: Any) -> bytes:
    return json.dumps(jsonable(doc), allow_nan=False).encode()


def encode(result: Result, render_args: dict[str, Any]) -> bytes:
    if result.document is not None:
        return dumps(result.document)
    arrays = {
        name: {"shape": list(a.shape), "dtype": a.dtype.name, "data": a}
        for name, a in result.arrays.items()
    }
    return dumps({"attrs": result.attrs, "arrays": arrays})
