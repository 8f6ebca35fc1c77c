"""JSON responses without Python float objects: the part of a request that grows with its vectors.

``json.dumps`` of a 128 x 1024 response builds 131,072 Python floats and formats each one (about
78 ms); orjson writes a float32 numpy array straight to bytes (a few ms). It prints each float32 as
the shortest decimal that reads back as the same float32, so a client parsing it to float32 gets
exactly the server's vectors. ``encoding_format: base64`` is the array's own little-endian bytes.
"""

from __future__ import annotations

import base64

import numpy as np
import orjson
from flask import Response

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(body, option=_OPTIONS), status=status, mimetype="application/json")
    response.headers.update(headers or {})
    return response


def vector_rows(vectors: np.ndarray, encoding: str) -> np.ndarray | list[str]:
    """Float32 rows as orjson writes them, or one base64 string per row (OpenAI's little-endian float32)."""
    rows = np.ascontiguousarray(vectors, dtype="<f4")  # orjson takes C-contiguous arrays only
    if encoding == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    return rows
