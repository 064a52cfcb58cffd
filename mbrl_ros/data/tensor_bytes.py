"""Named numpy arrays + string metadata as safetensors bytes, and back, validated (never pickle).

The safetensors format is an 8-byte little-endian header length, a JSON header (dtype, shape and
offsets per tensor, plus ``__metadata__``: a str → str map) and the raw tensor bytes. The
``safetensors`` library reads the tensors; the metadata map is read from the header here because
the library returns it only for files.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import safetensors
import safetensors.numpy


def pack(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """Serialize ``arrays`` (contiguous copies are made) with the ``metadata`` map."""
    bad = {k: type(v).__name__ for k, v in metadata.items() if not isinstance(v, str)}
    if bad:
        raise TypeError(f"safetensors metadata values must be str: {bad}")
    return safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata)


def read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` map of a safetensors buffer; ``ValueError`` if the header is malformed."""
    if len(data) < 8:
        raise ValueError(f"not a safetensors buffer: {len(data)} bytes")
    (length,) = struct.unpack("<Q", bytes(data[:8]))
    if length > len(data) - 8:
        raise ValueError(f"safetensors header of {length} bytes does not fit in {len(data)} bytes")
    try:
        header = json.loads(bytes(data[8 : 8 + length]))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"safetensors header is not JSON: {err}") from None
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ValueError("safetensors __metadata__ must map strings to strings")
    return meta


def unpack(data: bytes, require_finite: bool = True) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays and metadata from ``pack``'s bytes; ``ValueError`` on anything malformed or, with
    ``require_finite``, any non-finite float value."""
    metadata = read_metadata(data)
    try:
        arrays = safetensors.numpy.load(bytes(data))
    except Exception as err:  # SafetensorError and friends
        raise ValueError(f"safetensors payload is corrupted: {err}") from None
    if require_finite:
        for name, arr in arrays.items():
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError(f"tensor {name!r} holds non-finite values")
    return arrays, metadata
