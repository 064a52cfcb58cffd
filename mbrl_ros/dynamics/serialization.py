"""Save and load models as safetensors + JSON metadata, never with pickle.

File layout: a standard safetensors file (8-byte little-endian header length, JSON header, raw
little-endian tensor bytes). Every tensor is float64. The header's ``__metadata__`` carries one
entry, ``mbrl_ros``, a JSON object with at least::

    {"kind": "tvlg" | "ensemble" | "episodes", "version": 1,
     "dims": {"nx": ..., "nu": ..., ...}, "joint_names": [...], "training": {...}, ...}

Writes are atomic (a temporary file in the same directory, fsync, ``os.replace``). Loading parses
the header itself before handing the bytes to safetensors, so a pickle file, a truncated file, a
wrong kind/version or a tensor whose shape disagrees with the metadata's dimensions raises
:class:`SerializationError` (a ``ValueError``) naming the problem.

The same bytes travel in the ROS model payload: :func:`to_bytes` / :func:`from_bytes`.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile

import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class SerializationError(ValueError):
    """A file or payload that is not a valid mbrl_ros safetensors document of the expected kind."""


def to_bytes(arrays: dict[str, np.ndarray], metadata: dict) -> bytes:
    """Encode float64 ``arrays`` and JSON-serialisable ``metadata`` (must contain ``kind``)."""
    if "kind" not in metadata:
        raise ValueError("metadata must contain 'kind'")
    meta = dict(metadata)
    meta.setdefault("version", FORMAT_VERSION)
    tensors = {}
    for name, value in arrays.items():
        arr = np.ascontiguousarray(np.asarray(value, dtype=np.float64))
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"array {name!r} contains non-finite values")
        tensors[name] = arr
    return _st_save(tensors, metadata={"mbrl_ros": json.dumps(meta, sort_keys=True)})


def _parse_header(data: bytes, source: str) -> dict:
    if len(data) < 8:
        raise SerializationError(f"{source}: too short to be a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER_BYTES or 8 + n > len(data) or data[8:9] != b"{":
        if (data[0] == 0x80 and 2 <= data[1] <= 5) or data[:4] == b"PK\x03\x04":
            raise SerializationError(f"{source}: looks like a pickle/zip (torch.save) file; only safetensors is accepted")
        raise SerializationError(f"{source}: not a safetensors file or truncated (header of {n} bytes, file of {len(data)})")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SerializationError(f"{source}: corrupted safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise SerializationError(f"{source}: corrupted safetensors header")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise SerializationError(f"{source}: corrupted entry for tensor {name!r}") from None
        if info.get("dtype") != "F64":
            raise SerializationError(f"{source}: tensor {name!r} has dtype {info.get('dtype')}, expected F64")
    if 8 + n + end != len(data):
        raise SerializationError(f"{source}: truncated or padded (tensor data ends at {8 + n + end}, file has {len(data)} bytes)")
    return header


def from_bytes(data: bytes, expected_kind: str | None = None, source: str = "payload") -> tuple[dict[str, np.ndarray], dict]:
    """Decode and validate; returns ``(arrays, metadata)``. Raises :class:`SerializationError`."""
    header = _parse_header(bytes(data), source)
    raw = (header.get("__metadata__") or {}).get("mbrl_ros")
    if raw is None:
        raise SerializationError(f"{source}: safetensors file without mbrl_ros metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SerializationError(f"{source}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or "kind" not in meta:
        raise SerializationError(f"{source}: metadata lacks 'kind'")
    if meta.get("version") != FORMAT_VERSION:
        raise SerializationError(f"{source}: format version {meta.get('version')!r} is not supported (expected {FORMAT_VERSION})")
    if expected_kind is not None and meta["kind"] != expected_kind:
        raise SerializationError(f"{source}: holds a {meta['kind']!r}, expected a {expected_kind!r}")
    try:
        arrays = _st_load(bytes(data))
    except Exception as exc:  # safetensors raises its own error types
        raise SerializationError(f"{source}: corrupted tensor data ({exc})") from None
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise SerializationError(f"{source}: tensor {name!r} contains non-finite values")
    return arrays, meta


def save(path: str, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Write atomically: temp file in the target directory, fsync, ``os.replace``."""
    write_bytes(path, to_bytes(arrays, metadata))


def load(path: str, expected_kind: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Read and validate a file written by :func:`save`."""
    with open(path, "rb") as fh:
        data = fh.read()
    return from_bytes(data, expected_kind, source=str(path))


def _check_shapes(arrays: dict[str, np.ndarray], expected: dict[str, tuple], source: str) -> None:
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise SerializationError(f"{source}: missing tensors {missing}")
    for name, shape in expected.items():
        if tuple(arrays[name].shape) != tuple(shape):
            raise SerializationError(f"{source}: tensor {name!r} has shape {tuple(arrays[name].shape)}, expected {tuple(shape)}")


def _dims(meta: dict, keys, source: str) -> dict:
    dims = meta.get("dims") or {}
    try:
        out = {k: int(dims[k]) for k in keys}
    except (KeyError, TypeError, ValueError):
        raise SerializationError(f"{source}: metadata dims must contain {list(keys)}, got {dims}") from None
    if any(v < 0 for v in out.values()):
        raise SerializationError(f"{source}: negative dimension in {out}")
    return out


# ---- TVLG dynamics -------------------------------------------------------------------------------
def tvlg_to_bytes(dynamics, joint_names=(), training: dict | None = None, **extra) -> bytes:
    """Encode :class:`~mbrl_ros.dynamics.tvlg.TVLGDynamics` (kind ``tvlg``); ``extra`` goes into the metadata."""
    T, nx, nz = dynamics.Fm.shape
    arrays = {"Fm": dynamics.Fm, "fv": dynamics.fv, "dyn_covar": dynamics.dyn_covar, "x0_mean": dynamics.x0_mean,
              "x0_covar": dynamics.x0_covar}
    meta = {"kind": "tvlg", "dims": {"T": T, "nx": nx, "nu": nz - nx}, "dt_s": dynamics.dt_s if np.isfinite(dynamics.dt_s) else None,
            "joint_names": list(joint_names), "training": training or {}, **extra}
    return to_bytes(arrays, meta)


def tvlg_from_bytes(data: bytes, source: str = "payload"):
    """Returns ``(TVLGDynamics, metadata)``; raises :class:`SerializationError`."""
    from mbrl_ros.dynamics.tvlg import TVLGDynamics

    arrays, meta = from_bytes(data, "tvlg", source)
    d = _dims(meta, ("T", "nx", "nu"), source)
    T, nx, nu = d["T"], d["nx"], d["nu"]
    _check_shapes(arrays, {"Fm": (T, nx, nx + nu), "fv": (T, nx), "dyn_covar": (T, nx, nx), "x0_mean": (nx,), "x0_covar": (nx, nx)}, source)
    dt = meta.get("dt_s")
    try:
        return TVLGDynamics(arrays["Fm"], arrays["fv"], arrays["dyn_covar"], arrays["x0_mean"], arrays["x0_covar"],
                            float("nan") if dt is None else float(dt)), meta
    except ValueError as exc:
        raise SerializationError(f"{source}: invalid TVLG model ({exc})") from None


def save_tvlg(path: str, dynamics, joint_names=(), training: dict | None = None, **extra) -> None:
    """Save :class:`~mbrl_ros.dynamics.tvlg.TVLGDynamics` (kind ``tvlg``)."""
    write_bytes(path, tvlg_to_bytes(dynamics, joint_names, training, **extra))


def load_tvlg(path: str):
    """Returns ``(TVLGDynamics, metadata)``."""
    with open(path, "rb") as fh:
        return tvlg_from_bytes(fh.read(), str(path))


# ---- ensemble ------------------------------------------------------------------------------------
def ensemble_to_bytes(model, joint_names=(), **extra) -> bytes:
    meta = {
        "kind": "ensemble",
        "dims": {"nx": model.nx, "nu": model.nu},
        "dt_s": model.dt_s,
        "settings": model.settings_dict(),
        "residual_on_physics": model.residual,
        "joint_names": list(joint_names),
        "training": model.train_summary,
        **extra,
    }
    return to_bytes(model.state_arrays(), meta)


def ensemble_from_bytes(data: bytes, base_model=None, source: str = "payload"):
    """Rebuild an :class:`~mbrl_ros.dynamics.ensemble.EnsembleDynamics`; a residual model needs ``base_model``."""
    from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings

    arrays, meta = from_bytes(data, "ensemble", source)
    d = _dims(meta, ("nx", "nu"), source)
    try:
        settings = EnsembleSettings(**meta.get("settings", {}))
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{source}: invalid ensemble settings ({exc})") from None
    if meta.get("residual_on_physics") and base_model is None:
        raise SerializationError(f"{source}: a residual (semi-parametric) ensemble needs its physics base_model to load")
    model = EnsembleDynamics(d["nx"], d["nu"], float(meta.get("dt_s", 0.05)), settings,
                             base_model if meta.get("residual_on_physics") else None)
    try:
        model.load_state_arrays(arrays)
    except ValueError as exc:
        raise SerializationError(f"{source}: {exc}") from None
    model.train_summary = dict(meta.get("training") or {})
    return model, meta


def save_ensemble(path: str, model, joint_names=(), **extra) -> None:
    """Save an ensemble (kind ``ensemble``): weights, normalisation, elites, settings."""
    write_bytes(path, ensemble_to_bytes(model, joint_names, **extra))


def load_ensemble(path: str, base_model=None):
    """Returns ``(EnsembleDynamics, metadata)``."""
    with open(path, "rb") as fh:
        return ensemble_from_bytes(fh.read(), base_model, str(path))


def write_checkpoint(directory: str | os.PathLike, kind: str, version: int, payload: bytes) -> str:
    """A model checkpoint as the learner writes it: ``<kind>_v<version>.safetensors`` and a copy as
    ``<kind>_latest.safetensors`` (the one to load); returns the versioned file's path."""
    path = os.path.join(directory, f"{kind}_v{version:04d}.safetensors")
    write_bytes(path, payload)
    write_bytes(os.path.join(directory, f"{kind}_latest.safetensors"), payload)
    return path


def latest_version(directory: str | os.PathLike) -> int:
    """The highest ``<kind>_v<version>.safetensors`` version in ``directory`` (0: none, or no such folder)."""
    if not os.path.isdir(directory):
        return 0
    versions = [int(m.group(1)) for name in os.listdir(directory)
                if (m := re.fullmatch(r"[a-z_]+_v(\d+)\.safetensors", name))]
    return max(versions, default=0)


def write_bytes(path: str, payload: bytes) -> None:
    """Write ``payload`` atomically (temp file in the same directory, fsync, ``os.replace``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
