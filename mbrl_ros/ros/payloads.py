"""Our own payloads on standard message types, with a documented, versioned layout.

* Episodes (``/mbrl/episodes``) and models (``/mbrl/model``): ``std_msgs/UInt8MultiArray`` whose
  ``data`` is a document of :mod:`mbrl_ros.dynamics.serialization` (safetensors, float64, JSON
  metadata with ``kind`` ``episodes`` / ``tvlg`` / ``ensemble``) and whose single layout dimension
  is labelled with the payload and its layout version, e.g. ``mbrl_ros/episodes/v1`` (``size`` =
  byte count). An episodes document carries the episodes' own JSON metadata under ``episodes``.
* Trial markers (``/mbrl/trial``): ``std_msgs/String`` holding the JSON of
  :class:`mbrl_ros.data.alignment.TrialMarker`.

Decoders check the label, size, safetensors structure, dtype, shapes and finiteness and raise
:class:`InvalidMessage`; a rejected payload is counted by the node and never used.
"""

from __future__ import annotations

import array

from std_msgs.msg import MultiArrayDimension, String, UInt8MultiArray

from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.ros.conversions import InvalidMessage

EPISODES_LABEL = "mbrl_ros/episodes/v1"
MODEL_LABEL = "mbrl_ros/model/v1"
#: Larger payloads are refused before parsing (a 7-member ensemble is a few MB).
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024


def bytes_msg(label: str, data: bytes) -> UInt8MultiArray:
    msg = UInt8MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=len(data), stride=len(data))]
    msg.data = array.array("B", data)
    return msg


def msg_bytes(msg: UInt8MultiArray, label: str) -> bytes:
    """The payload bytes of ``msg`` after checking its label and size."""
    dims = msg.layout.dim
    if len(dims) != 1 or dims[0].label != label:
        found = [d.label for d in dims]
        raise InvalidMessage(f"payload layout {found} is not [{label!r}]")
    data = bytes(msg.data)
    if dims[0].size != len(data):
        raise InvalidMessage(f"payload declares {dims[0].size} bytes but carries {len(data)}")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidMessage(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return data


def encode_episodes(episodes: Episodes) -> UInt8MultiArray:
    arrays, meta_json = episodes.to_arrays()
    return bytes_msg(EPISODES_LABEL, serialization.to_bytes(arrays, {"kind": "episodes", "episodes": meta_json}))


def decode_episodes(msg: UInt8MultiArray) -> Episodes:
    try:
        arrays, meta = serialization.from_bytes(msg_bytes(msg, EPISODES_LABEL), "episodes")
        return Episodes.from_arrays(arrays, meta.get("episodes", ""))
    except ValueError as err:
        raise InvalidMessage(f"bad episodes payload: {err}") from None


def encode_model(data: bytes) -> UInt8MultiArray:
    """A model payload from the bytes of a saved model (see ``mbrl_ros.dynamics.serialization``)."""
    return bytes_msg(MODEL_LABEL, data)


def decode_model(msg: UInt8MultiArray) -> tuple[bytes, dict]:
    """The model document's bytes and metadata, validated (structure, dtype, finiteness)."""
    try:
        data = msg_bytes(msg, MODEL_LABEL)
        _, meta = serialization.from_bytes(data)
    except ValueError as err:
        raise InvalidMessage(f"bad model payload: {err}") from None
    return data, meta


def trial_marker_msg(marker: TrialMarker) -> String:
    return String(data=marker.to_json())


def decode_trial_marker(msg: String) -> TrialMarker:
    try:
        return TrialMarker.from_json(msg.data)
    except ValueError as err:
        raise InvalidMessage(str(err)) from None
