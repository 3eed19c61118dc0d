"""How the result cache keeps a computed answer: its arrays and attributes as one npz, exact."""

from __future__ import annotations

import io
import json

import numpy as np

from dada.endpoint import Result

ATTRS = "__attrs__"


def dump(result: Result) -> bytes:
    buf = io.BytesIO()
    attrs = np.frombuffer(json.dumps(result.attrs).encode(), dtype=np.uint8)
    np.savez(buf, **result.arrays, **{ATTRS: attrs})
    return buf.getvalue()


def load(data: bytes) -> Result:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != ATTRS}
        attrs = json.loads(z[ATTRS].tobytes()) if ATTRS in z.files else {}
    return Result(arrays, attrs)
