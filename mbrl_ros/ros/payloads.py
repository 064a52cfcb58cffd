"""Our own payloads on standard message types, with a documented, versioned layout.

* Episodes (``/mbrl/episodes``) and models (``/mbrl/model``): ``std_msgs/UInt8MultiArray`` whose
  ``data`` is a document of :mod:`mbrl_ros.dynamics.serialization` (safetensors, float64, JSON
  metadata with ``kind`` ``episodes`` / ``tvlg`` / ``ensemble``) and whose single layout dimension
  (``size`` = byte count) is labelled with the payload, its layout version and the CRC-32 of the
  bytes, e.g. ``mbrl_ros/episodes/v2 crc32=0a1b2c3d``: safetensors has no checksum of its own, and a
  changed tensor byte is otherwise a different, valid model. An episodes document carries the
  episodes' own JSON metadata under ``episodes``.
* Trial markers (``/mbrl/trial``): ``std_msgs/String`` holding the JSON of
  :class:`mbrl_ros.data.alignment.TrialMarker`.

Decoders check the label, size, checksum, safetensors structure, dtype, shapes, finiteness and
the metadata's types and, given the arm's joints, that the payload is for that arm (dimensions,
joint names; an ensemble's layer sizes against the bytes it carries, before anything is allocated
for it), and raise :class:`InvalidMessage`; a rejected payload is counted by the node and never
used.
"""

from __future__ import annotations

import array
import math
import zlib
from typing import Sequence

from std_msgs.msg import MultiArrayDimension, String, UInt8MultiArray

from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.ros.conversions import InvalidMessage

EPISODES_LABEL = "mbrl_ros/episodes/v2"
MODEL_LABEL = "mbrl_ros/model/v2"
#: Larger payloads are refused before parsing (a 7-member ensemble is a few MB).
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
#: The metadata entries whose type a decoder checks, when present (list: of strings; float: a finite number).
_EPISODE_FIELDS = {"trial": int, "iteration": int, "dt_s": float, "start_s": float, "mode": str, "bag": str,
                   "joint_names": list}
_MODEL_FIELDS = {"model_version": int, "iteration": int, "dt_s": float, "joint_names": list, "dims": dict}


def bytes_msg(label: str, data: bytes) -> UInt8MultiArray:
    msg = UInt8MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=f"{label} crc32={zlib.crc32(data):08x}", size=len(data), stride=len(data))]
    msg.data = array.array("B", data)
    return msg


def msg_bytes(msg: UInt8MultiArray, label: str) -> bytes:
    """The payload bytes of ``msg`` after checking its label, size and checksum."""
    dims = msg.layout.dim
    found = [d.label[:100] for d in dims]
    if len(dims) != 1 or not dims[0].label.startswith(f"{label} crc32="):
        raise InvalidMessage(f"payload layout {found} is not [{label + ' crc32=<8 hex digits>'!r}]")
    data = bytes(msg.data)
    if dims[0].size != len(data):
        raise InvalidMessage(f"payload declares {dims[0].size} bytes but carries {len(data)}")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidMessage(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    declared = dims[0].label[len(label) + len(" crc32="):]
    if declared != f"{zlib.crc32(data):08x}":
        raise InvalidMessage(f"payload checksum {declared[:8]!r} does not match its bytes ({zlib.crc32(data):08x})")
    return data


def _check_fields(meta: dict, fields: dict, what: str) -> None:
    for key, kind in fields.items():
        value = meta.get(key)
        if value is None:
            continue
        if kind is float:
            good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif kind is int:
            good = isinstance(value, int) and not isinstance(value, bool)
        elif kind is list:
            good = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            good = isinstance(value, kind)
        if not good:
            raise InvalidMessage(f"{what} metadata {key!r} is {str(value)[:100]!r}, expected {kind.__name__}")


def _check_joints(found, joint_names, what: str) -> None:
    if found and list(found) != list(joint_names):
        raise InvalidMessage(f"{what} is for joints {str(found)[:200]}, not this arm's {list(joint_names)}")


def _check_dims(found: dict, expected: dict, what: str) -> None:
    if found != expected:
        raise InvalidMessage(f"{what} has dimensions {str(found)[:200]}, this arm's are {expected}")


def encode_episodes(episodes: Episodes) -> UInt8MultiArray:
    arrays, meta_json = episodes.to_arrays()
    return bytes_msg(EPISODES_LABEL, serialization.to_bytes(arrays, {"kind": "episodes", "episodes": meta_json}))


def decode_episodes(msg: UInt8MultiArray, joint_names: Sequence[str] | None = None) -> Episodes:
    """The episodes of an episodes payload, validated; given ``joint_names``, for that arm."""
    try:
        arrays, meta = serialization.from_bytes(msg_bytes(msg, EPISODES_LABEL), "episodes")
        episodes = Episodes.from_arrays(arrays, meta.get("episodes", ""))
    except ValueError as err:
        raise InvalidMessage(f"bad episodes payload: {err}") from None
    _check_fields(episodes.metadata, _EPISODE_FIELDS, "episodes")
    if joint_names is not None:
        n = len(joint_names)
        _check_dims({"nx": episodes.nx, "nu": episodes.nu}, {"nx": 2 * n, "nu": n}, "episodes")
        _check_joints(episodes.metadata.get("joint_names"), joint_names, "episodes")
    return episodes


def encode_model(data: bytes) -> UInt8MultiArray:
    """A model payload from the bytes of a saved model (see ``mbrl_ros.dynamics.serialization``)."""
    return bytes_msg(MODEL_LABEL, data)


def decode_model(msg: UInt8MultiArray, joint_names: Sequence[str] | None = None) -> tuple[bytes, dict]:
    """The model document's bytes and metadata, validated (structure, dtype, finiteness, metadata
    types); given ``joint_names``, a ``tvlg`` or ``ensemble`` model of that arm, an ensemble no
    larger than its bytes."""
    try:
        data = msg_bytes(msg, MODEL_LABEL)
        _, meta = serialization.from_bytes(data)
    except ValueError as err:
        raise InvalidMessage(f"bad model payload: {err}") from None
    _check_fields(meta, _MODEL_FIELDS, "model")
    if joint_names is not None:
        n, kind = len(joint_names), meta["kind"]
        if kind not in ("tvlg", "ensemble"):
            raise InvalidMessage(f"model kind {str(kind)[:100]!r} is neither 'tvlg' nor 'ensemble'")
        dims = meta.get("dims") or {}
        expected = {"nx": 2 * n, "nu": n, **({"T": dims.get("T")} if kind == "tvlg" else {})}
        _check_dims(dims, expected, "model")
        _check_joints(meta.get("joint_names"), joint_names, "model")
        if kind == "ensemble":
            _check_ensemble_size(meta.get("settings", {}), len(data))
    return data, meta


def _check_ensemble_size(settings, n_bytes: int) -> None:
    """An ensemble's layers are allocated from its settings before its tensors are compared with
    them: settings whose hidden layers' weights and biases alone outweigh the payload are refused."""
    from mbrl_ros.dynamics.ensemble import EnsembleSettings

    if not isinstance(settings, dict):
        raise InvalidMessage(f"ensemble settings {str(settings)[:100]!r} are not an object")
    sizes = {key: settings.get(key, getattr(EnsembleSettings, key)) for key in ("n_members", "hidden_units", "hidden_layers")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values()):
        raise InvalidMessage(f"ensemble sizes {sizes} are not positive integers")
    e, h, layers = sizes["n_members"], sizes["hidden_units"], sizes["hidden_layers"]
    if 8 * e * ((layers - 1) * h * h + layers * h) > n_bytes:
        raise InvalidMessage(f"ensemble settings {sizes} need more weights than the {n_bytes} bytes carry")


def trial_marker_msg(marker: TrialMarker) -> String:
    return String(data=marker.to_json())


def decode_trial_marker(msg: String) -> TrialMarker:
    try:
        return TrialMarker.from_json(msg.data)
    except ValueError as err:
        raise InvalidMessage(str(err)) from None
