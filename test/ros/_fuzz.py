"""Seeded malformed messages for the fuzz tests, every one of them malformed by construction.

Each generator takes a ``numpy`` random generator and returns ``(kind, message)``: joint states
(missing, unknown or duplicated joint names, lengths of name/position/velocity/effort that
disagree, non-finite values, empty, 10⁶ elements), torque commands (wrong length, non-finite,
empty, 10⁶ elements), goals (non-finite, out of reach, in a wrong frame) and episode and model
payloads: valid documents, built first with the real encoders, then damaged at the level a buggy
publisher or a damaged link would (truncated, bit-flipped, a lying size, a huge header length,
another label, garbage) or rebuilt as valid safetensors holding what a decoder must refuse (a
wrong dtype, a wrong shape, non-finite values, metadata of the wrong type, another arm's model, an
ensemble whose settings would allocate gigabytes).
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings
from mbrl_ros.dynamics.tvlg import TVLGDynamics
from mbrl_ros.ros import payloads

PANDA = tuple(f"panda_joint{i}" for i in range(1, 8))
IIWA = tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))
HOME = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
BASE_FRAME = "panda_link0"
HUGE = 10**6
NON_FINITE = (math.nan, math.inf, -math.inf)
STEPS = 20


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _odd_name(rng) -> str:
    return _pick(rng, ["panda_joint8", "panda_joint0", "", " panda_joint1", "PANDA_JOINT1", "panda_finger_joint1",
                       "joint_" + "x" * int(rng.integers(100, 2000)), "пanda_joint1"])


# ---- /joint_states ------------------------------------------------------------------------------
def joint_state(rng) -> tuple[str, JointState]:
    names = list(rng.permutation(PANDA))
    kind = _pick(rng, ["missing", "unknown", "duplicated", "lengths", "non_finite", "empty"])
    if kind == "missing":
        keep = int(rng.integers(0, 7))
        names = names[:keep] if keep else []
        kind = "missing" if names else "empty"
    elif kind == "unknown":
        names[int(rng.integers(7))] = _odd_name(rng)
    elif kind == "duplicated":
        twice = _pick(rng, PANDA)
        if rng.random() < 0.5:
            names.insert(int(rng.integers(8)), twice)
        else:
            names[int(rng.integers(7))] = twice
            names = names if len(set(names)) < 7 else names[:6] + [names[0]]
    elif kind == "empty":
        names = []
    n = len(names)
    q = list(np.resize(HOME, n) + 0.01 * rng.standard_normal(n))
    qd = list(0.01 * rng.standard_normal(n))
    effort = list(rng.uniform(-10.0, 10.0, n)) if rng.random() < 0.7 else []
    if kind == "lengths":
        lengths = {"position": n, "velocity": n, "effort": len(effort)}
        for field in rng.permutation(list(lengths))[: int(rng.integers(1, 4))]:
            wrong = [k for k in range(0, 12) if k != n and not (field == "effort" and k == 0)]
            lengths[field] = _pick(rng, wrong)
        q, qd, effort = (list(rng.uniform(-1.0, 1.0, lengths[f])) for f in ("position", "velocity", "effort"))
    elif kind == "non_finite":
        target = q if rng.random() < 0.5 else qd
        for i in rng.choice(n, size=int(rng.integers(1, 4)), replace=False):
            target[i] = _pick(rng, NON_FINITE)
    return kind, JointState(name=names, position=q, velocity=qd, effort=effort)


def huge_joint_state(rng, variant: int) -> tuple[str, JointState]:
    """10⁶ joints (ours among them) or 10⁶ values for our 7 names."""
    if variant % 2 == 0:
        names = [f"j{i}" for i in range(HUGE - 7)] + list(PANDA)
        return "huge_names", JointState(name=names, position=np.zeros(HUGE).tolist(), velocity=np.zeros(HUGE).tolist())
    return "huge_arrays", JointState(name=list(PANDA), position=rng.uniform(-1, 1, HUGE).tolist(),
                                     velocity=np.zeros(HUGE).tolist(), effort=np.zeros(HUGE).tolist())


def well_formed_state(msg: JointState) -> bool:
    """The sim's own joint states: our 7 joints in URDF order, every array complete and finite."""
    return (tuple(msg.name) == PANDA and len(msg.position) == len(msg.velocity) == len(msg.effort) == 7
            and np.all(np.isfinite(np.concatenate([msg.position, msg.velocity, msg.effort]))))


# ---- /effort_controller/commands ----------------------------------------------------------------
def command(rng) -> tuple[str, Float64MultiArray]:
    """Finite values are within the torque limits: applied, they would show in the arm's effort."""
    kind = _pick(rng, ["wrong_length", "non_finite", "non_finite_wrong_length", "empty"])
    n = 0 if kind == "empty" else 7 if kind == "non_finite" else _pick(rng, [1, 2, 3, 4, 5, 6, 8, 9, 14, 32])
    values = rng.uniform(-80.0, 80.0, n)
    if kind.startswith("non_finite"):
        for i in rng.choice(n, size=int(rng.integers(1, min(n, 3) + 1)), replace=False):
            values[i] = _pick(rng, NON_FINITE)
    return kind, Float64MultiArray(data=values.tolist())


def huge_command(rng, variant: int) -> tuple[str, Float64MultiArray]:
    values = rng.uniform(-80.0, 80.0, HUGE)
    if variant % 2:
        values[int(rng.integers(HUGE))] = math.nan
        return "huge_non_finite", Float64MultiArray(data=values.tolist())
    return "huge", Float64MultiArray(data=values.tolist())


def has_non_finite(msg: Float64MultiArray) -> bool:
    return not np.all(np.isfinite(np.asarray(msg.data, dtype=float)))


# ---- /mbrl/goal ---------------------------------------------------------------------------------
def goal(rng, reachable) -> tuple[str, PointStamped]:
    """``reachable``: a goal the controller would take, in the right frame."""
    kind = _pick(rng, ["non_finite", "out_of_reach", "wrong_frame"])
    msg = PointStamped()
    msg.header.frame_id = _pick(rng, ["", BASE_FRAME])
    p = np.asarray(reachable, dtype=float) + rng.uniform(-0.05, 0.05, 3)
    if kind == "non_finite":
        for i in rng.choice(3, size=int(rng.integers(1, 4)), replace=False):
            p[i] = _pick(rng, NON_FINITE)
    elif kind == "out_of_reach":
        scale = 10.0 ** rng.uniform(0.3, 300.0) if rng.random() < 0.5 else rng.uniform(1.3, 5.0)
        if rng.random() < 0.5:
            angle = rng.uniform(0, 2 * math.pi)
            p[:2] = [scale * math.cos(angle), scale * math.sin(angle)]
        else:
            p[2] = _pick(rng, [1.0, -1.0]) * (scale + 0.5)
    else:
        msg.header.frame_id = _pick(rng, ["world", "map", "odom", "panda_link1", "panda_hand", " panda_link0",
                                          "panda_link0 ", "PANDA_LINK0", "/panda_link0", "panda_link00",
                                          "f" * int(rng.integers(100, 10_000))])
    msg.point.x, msg.point.y, msg.point.z = (float(v) for v in p)
    return kind, msg


# ---- payloads -----------------------------------------------------------------------------------
def document(tensors: dict[str, tuple[str, tuple[int, ...], bytes]], meta: dict | str) -> bytes:
    """A safetensors document written by hand (to carry what the encoder refuses to write):
    ``name -> (dtype, shape, raw bytes)`` and the ``mbrl_ros`` metadata (a dict, or raw text)."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"mbrl_ros": meta if isinstance(meta, str) else json.dumps(meta)}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def _f64(arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    return {k: ("F64", v.shape, np.ascontiguousarray(v, dtype="<f8").tobytes()) for k, v in arrays.items()}


def valid_episode_document(rng, joint_names=PANDA, mode="lqr_flm") -> bytes:
    n = len(joint_names)
    x = np.concatenate([np.tile(HOME[:n], (STEPS + 1, 1)), np.zeros((STEPS + 1, n))], axis=1)[None]
    x = x + 0.01 * rng.standard_normal(x.shape)
    episode = Episodes(x, rng.uniform(-5, 5, (1, STEPS, n)), np.arange(STEPS + 1)[None] * 0.05, np.array([0.4, 0.1, 0.5]),
                       {"trial": int(rng.integers(1000)), "iteration": 0, "dt_s": 0.05, "joint_names": list(joint_names),
                        "mode": mode, "start_s": 12.5, "bag": ""})
    return bytes(payloads.encode_episodes(episode).data)


def valid_tvlg_document(rng, joint_names=PANDA) -> bytes:
    nx, nu = 2 * len(joint_names), len(joint_names)
    dynamics = TVLGDynamics(0.01 * rng.standard_normal((STEPS, nx, nx + nu)), 0.01 * rng.standard_normal((STEPS, nx)),
                            np.tile(np.eye(nx) * 1e-4, (STEPS, 1, 1)), np.zeros(nx), np.eye(nx) * 1e-4, 0.05)
    return serialization.tvlg_to_bytes(dynamics, joint_names, model_version=int(rng.integers(1, 100)), iteration=0)


def small_ensemble(seed: int = 0) -> EnsembleDynamics:
    rng = np.random.default_rng(seed)
    ensemble = EnsembleDynamics(14, 7, 0.05, EnsembleSettings(n_members=2, n_elites=1, hidden_units=16, hidden_layers=1,
                                                              max_epochs_per_train=2, seed=seed))
    x, u = 0.1 * rng.standard_normal((200, 14)), rng.standard_normal((200, 7))
    ensemble.add_transitions(x, u, x + 0.01 * np.concatenate([x[:, 7:], u], axis=1))
    ensemble.train()
    return ensemble


class PayloadFuzzer:
    """Malformed payloads of one label, made from the valid documents ``bases(rng)`` returns."""

    #: Damage to the message (the document itself is valid, or was).
    WIRE = ("truncated", "bit_flip", "size_lie", "label", "huge_header_length", "padded", "garbage", "empty")
    #: Valid safetensors documents holding what the decoder must refuse.
    DOCUMENT = ("wrong_dtype", "wrong_shape", "non_finite", "metadata_types", "metadata_missing", "other_arm")

    def __init__(self, label: str, bases, extra_kinds: dict | None = None) -> None:
        self.label, self.bases = label, bases
        self.extra = extra_kinds or {}
        self.kinds = self.WIRE + self.DOCUMENT + tuple(self.extra)

    def __call__(self, rng):
        kind = _pick(rng, self.kinds)
        base = self.bases(rng)
        make = self.extra.get(kind) or getattr(self, f"_{kind}")
        return kind, make(rng, base)

    def _msg(self, data: bytes):
        return payloads.bytes_msg(self.label, data)

    # -- the message damaged
    def _truncated(self, rng, doc):
        return self._msg(doc[: int(rng.integers(0, len(doc)))])

    def _bit_flip(self, rng, doc):
        msg = self._msg(doc)
        data = bytearray(doc)
        for position in rng.choice(8 * len(data), size=int(rng.integers(1, 9)), replace=False):
            data[position // 8] ^= 1 << (position % 8)
        msg.data = bytes(data)
        return msg

    def _size_lie(self, rng, doc):
        msg = self._msg(doc)
        msg.layout.dim[0].size = _pick(rng, [0, len(doc) - 1, len(doc) + 1, 2**32 - 1, int(rng.integers(0, 2**32))])
        if msg.layout.dim[0].size == len(doc):
            msg.layout.dim[0].size += 1
        return msg

    def _label(self, rng, doc):
        msg = self._msg(doc)
        other = payloads.MODEL_LABEL if self.label == payloads.EPISODES_LABEL else payloads.EPISODES_LABEL
        crc = msg.layout.dim[0].label.partition(" ")[2]
        choice = int(rng.integers(7))
        if choice == 0:
            msg.layout.dim = []
        elif choice == 1:
            msg.layout.dim.append(MultiArrayDimension(label="extra", size=1, stride=1))
        else:
            msg.layout.dim[0].label = [f"{other} {crc}", self.label, self.label.replace("v2", "v1") + f" {crc}", "",
                                       f"{self.label} crc32=zz"][choice - 2]
        return msg

    def _huge_header_length(self, rng, doc):
        (n,) = struct.unpack("<Q", doc[:8])
        claimed = _pick(rng, [2**64 - 1, 2**63, 2**40, 101 * 1024 * 1024, len(doc), n + int(rng.integers(1, 64))])
        return self._msg(struct.pack("<Q", claimed) + doc[8:])

    def _padded(self, rng, doc):
        return self._msg(doc + rng.bytes(int(rng.integers(1, 256))))

    def _garbage(self, rng, doc):
        prefix = _pick(rng, [b"", b"\x80\x04\x95", b"PK\x03\x04", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"])
        return self._msg(prefix + rng.bytes(int(rng.integers(0, 2048))))

    def _empty(self, rng, doc):
        return self._msg(b"")

    # -- valid safetensors, refused for what they hold
    def _parts(self, doc):
        arrays, meta = serialization.from_bytes(doc)
        return {k: v.copy() for k, v in arrays.items()}, meta

    def _wrong_dtype(self, rng, doc):
        arrays, meta = self._parts(doc)
        tensors = _f64(arrays)
        name = _pick(rng, sorted(tensors))
        dtype = _pick(rng, ["F32", "I64", "F16", "U8", "BOOL", "f64", ""])
        size = {"F32": 4, "I64": 8, "F16": 2, "U8": 1, "BOOL": 1}.get(dtype, 8)
        shape = arrays[name].shape
        tensors[name] = (dtype, shape, bytes(int(np.prod(shape, dtype=int)) * size))
        return self._msg(document(tensors, meta))

    def _wrong_shape(self, rng, doc):
        arrays, meta = self._parts(doc)
        # Not an episode's goal: any length is one (its dimension is the task's).
        name = _pick(rng, sorted(k for k, v in arrays.items() if v.size > 1 and k != "goal"))
        value = arrays[name]
        if rng.random() < 0.5:
            arrays[name] = value.reshape(-1)[:-1]  # one element short, flattened
        else:
            arrays[name] = np.concatenate([value, value[:1]], axis=0)  # one row too many
        return self._msg(document(_f64(arrays), meta))

    def _non_finite(self, rng, doc):
        arrays, meta = self._parts(doc)
        name = _pick(rng, sorted(k for k, v in arrays.items() if v.size))
        arrays[name].reshape(-1)[int(rng.integers(arrays[name].size))] = _pick(rng, NON_FINITE)
        return self._msg(document(_f64(arrays), meta))

    def _metadata_missing(self, rng, doc):
        arrays, meta = self._parts(doc)
        choice = int(rng.integers(5))
        if choice == 0:
            broken = json.dumps(meta)[: -int(rng.integers(1, 10))]  # not JSON
        elif choice == 1:
            broken = json.dumps({k: v for k, v in meta.items() if k != "kind"})
        elif choice == 2:
            broken = json.dumps({**meta, "version": _pick(rng, [0, 2, "1", None])})
        elif choice == 3:
            broken = json.dumps({**meta, "kind": _pick(rng, ["pickle", "gmm", "", "Episodes", 1])})
        else:
            broken = json.dumps([meta])
        return self._msg(document(_f64(arrays), broken))

    def _metadata_types(self, rng, doc):
        arrays, meta = self._parts(doc)
        wrong = _pick(rng, [[0], {"n": 0}, "zero", 1.5, True, math.nan, math.inf])
        if meta["kind"] == "episodes":
            inner = json.loads(meta["episodes"])
            key = _pick(rng, ["trial", "iteration", "dt_s", "start_s", "mode", "joint_names", "bag"])
            if key in ("dt_s", "start_s") and isinstance(wrong, float) and math.isfinite(wrong):
                wrong = "fast"
            if key in ("mode", "bag") and isinstance(wrong, str):
                wrong = 7
            inner[key] = wrong
            meta = {**meta, "episodes": json.dumps(inner)}
        else:
            key = _pick(rng, ["model_version", "iteration", "dt_s", "joint_names", "dims"])
            if key == "dt_s" and isinstance(wrong, float) and math.isfinite(wrong):
                wrong = "fast"
            if key == "dims" and isinstance(wrong, dict):
                wrong = [14, 7]
            meta = {**meta, key: wrong}
        return self._msg(document(_f64(arrays), meta))

    def _other_arm(self, rng, doc):
        """A valid payload of the iiwa (the same dimensions, other joints) or of a 2-joint arm."""
        arm = IIWA if rng.random() < 0.5 else ("a", "b")
        _, meta = self._parts(doc)
        if meta["kind"] == "episodes":
            return self._msg(valid_episode_document(rng, arm))
        if meta["kind"] == "tvlg" or len(arm) != 7:
            return self._msg(valid_tvlg_document(rng, arm))
        arrays, meta = self._parts(doc)
        return self._msg(document(_f64(arrays), {**meta, "joint_names": list(arm)}))


def ensemble_bomb(rng, doc):
    """An ensemble whose settings would have the loader allocate gigabytes before it compares them
    with the tensors it carries."""
    arrays, meta = serialization.from_bytes(doc)
    if meta["kind"] != "ensemble":
        return payloads.bytes_msg(payloads.MODEL_LABEL, doc[:-8])  # a truncated TVLG instead
    settings = {**meta["settings"], "hidden_units": int(rng.integers(20_000, 200_000)), "hidden_layers": 3}
    return payloads.bytes_msg(payloads.MODEL_LABEL, document(_f64(arrays), {**meta, "settings": settings}))


def episode_fuzzer() -> PayloadFuzzer:
    return PayloadFuzzer(payloads.EPISODES_LABEL, valid_episode_document)


def model_fuzzer(ensemble_document: bytes) -> PayloadFuzzer:
    def bases(rng):
        return ensemble_document if rng.random() < 0.5 else valid_tvlg_document(rng)

    return PayloadFuzzer(payloads.MODEL_LABEL, bases, {"ensemble_bomb": ensemble_bomb})


def huge_payload(label: str, n_bytes: int):
    """A document whose JSON header runs ``n_bytes`` and never ends: its length field agrees with
    the bytes (within the format's limit), its checksum too."""
    header = b'{"__metadata__": {"mbrl_ros": "' + b"x" * n_bytes
    return payloads.bytes_msg(label, struct.pack("<Q", len(header)) + header)
