"""Per-structure ``info`` and store metadata as JSON that keeps its types.

extxyz comment lines and HDF5 string datasets can only hold text. Plain JSON would
turn arrays into lists and lose their dtype, so arrays are tagged; everything else
(str, int, float incl. NaN, bool, None, lists, dicts with string keys) is JSON already.
Tuples come back as lists, as they do from an ASE database.
"""

from __future__ import annotations

import json
from typing import Any, Dict

import numpy as np

from ..errors import DatasetError

_ARRAY = "__ndarray__"


def scalar(value: Any) -> bool:
    """A value every text key-value format holds natively (extxyz comment line, ASE key-value pair)."""
    return isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_))


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, np.ndarray):
        return {_ARRAY: value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, where) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    # refuse rather than drop: a silently missing key is found only when it is needed
    raise DatasetError(f"{where} holds a {type(value).__name__}, which cannot be stored as JSON")


def _decode(obj: Dict[str, Any]) -> Any:
    if _ARRAY in obj and set(obj) == {_ARRAY, "dtype", "shape"}:
        return np.array(obj[_ARRAY], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    return obj


def dumps(mapping: Dict[str, Any], where: str = "info") -> str:
    return json.dumps(_encode(mapping, where))


def loads(text: str | bytes) -> Dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode()
    return json.loads(text, object_hook=_decode)
