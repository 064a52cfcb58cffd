"""Episodes: N trials × T steps of states, torques and timestamps.

Shapes (``N`` trials, ``T`` control steps, state ``x = [q; qd]`` of size ``nx``, torque ``u`` of
size ``nu``):

* ``x``: ``(N, T + 1, nx)`` — the state before every step and the final state;
* ``u``: ``(N, T, nu)`` — the torque held during step ``t`` (N·m, on top of gravity compensation
  when the arm compensates gravity);
* ``timestamps_s``: ``(N, T + 1)`` — time of every state sample since the trial's start;
* ``goal``: ``(goal_dim,)`` — the task goal (e.g. the end-effector target in metres), may be empty.

:class:`Episodes` validates shapes and finiteness on construction and raises ``ValueError`` with
the offending field. ``to_arrays``/``from_arrays`` give a flat form (a dict of named float64 arrays
plus a JSON string of metadata) for message codecs and files. No ROS imports here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EPISODES_LAYOUT_VERSION = 1


def _as_float_array(name: str, value: Any, ndim: int) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.ndim != ndim:
        raise ValueError(f"episodes field {name!r} must have {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise ValueError(f"episodes field {name!r} contains a non-finite value at index {bad}")
    return arr


@dataclass
class Episodes:
    """A batch of ``N`` trials of ``T`` steps (see the module docstring for shapes and units).

    Attributes:
        x: states ``(N, T + 1, nx)``.
        u: torques ``(N, T, nu)``.
        timestamps_s: sample times ``(N, T + 1)``, non-decreasing along each trial.
        goal: task goal ``(goal_dim,)``.
        metadata: JSON-serialisable dict (robot, joint names, dt_s, controller iteration, ...).
    """

    x: np.ndarray
    u: np.ndarray
    timestamps_s: np.ndarray
    goal: np.ndarray = field(default_factory=lambda: np.zeros(0))
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = _as_float_array("x", self.x, 3)
        self.u = _as_float_array("u", self.u, 3)
        self.timestamps_s = _as_float_array("timestamps_s", self.timestamps_s, 2)
        self.goal = _as_float_array("goal", self.goal, 1)
        n, t1, _ = self.x.shape
        if n < 1 or t1 < 2:
            raise ValueError(f"episodes need at least 1 trial of 1 step; x has shape {self.x.shape}")
        if self.u.shape[:2] != (n, t1 - 1):
            raise ValueError(f"u must have shape (N, T, nu) = ({n}, {t1 - 1}, nu) to match x {self.x.shape}, got {self.u.shape}")
        if self.timestamps_s.shape != (n, t1):
            raise ValueError(f"timestamps_s must have shape (N, T + 1) = ({n}, {t1}), got {self.timestamps_s.shape}")
        if np.any(np.diff(self.timestamps_s, axis=1) < 0.0):
            raise ValueError("timestamps_s must be non-decreasing along every trial")
        if not isinstance(self.metadata, dict):
            raise ValueError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None

    @property
    def n_trials(self) -> int:
        return self.x.shape[0]

    @property
    def horizon_steps(self) -> int:
        """``T``: number of control steps per trial."""
        return self.u.shape[1]

    @property
    def nx(self) -> int:
        return self.x.shape[2]

    @property
    def nu(self) -> int:
        return self.u.shape[2]

    def trial(self, i: int) -> "Episodes":
        """Trial ``i`` as a one-trial batch."""
        return self.select([i])

    def select(self, indices) -> "Episodes":
        idx = np.asarray(indices, dtype=int)
        return Episodes(self.x[idx], self.u[idx], self.timestamps_s[idx], self.goal, dict(self.metadata))

    @staticmethod
    def concatenate(batches: list["Episodes"]) -> "Episodes":
        """Stack trials of equal ``T``, ``nx``, ``nu``; metadata and goal of the first batch are kept."""
        if not batches:
            raise ValueError("cannot concatenate an empty list of episodes")
        shapes = {(b.horizon_steps, b.nx, b.nu) for b in batches}
        if len(shapes) != 1:
            raise ValueError(f"episodes to concatenate differ in (T, nx, nu): {sorted(shapes)}")
        return Episodes(
            np.concatenate([b.x for b in batches]),
            np.concatenate([b.u for b in batches]),
            np.concatenate([b.timestamps_s for b in batches]),
            batches[0].goal,
            dict(batches[0].metadata),
        )

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flattened one-step transitions ``(x_t, u_t, x_{t+1})``, each ``(N T, ·)``."""
        return (
            self.x[:, :-1].reshape(-1, self.nx),
            self.u.reshape(-1, self.nu),
            self.x[:, 1:].reshape(-1, self.nx),
        )

    def to_arrays(self) -> tuple[dict[str, np.ndarray], str]:
        """Flat form: named float64 arrays (``x``, ``u``, ``timestamps_s``, ``goal``) and JSON metadata.

        The JSON carries ``layout_version`` and the dimensions so a decoder can check them.
        """
        meta = dict(self.metadata)
        meta.update(
            layout_version=EPISODES_LAYOUT_VERSION,
            n_trials=self.n_trials,
            horizon_steps=self.horizon_steps,
            nx=self.nx,
            nu=self.nu,
        )
        arrays = {"x": self.x.copy(), "u": self.u.copy(), "timestamps_s": self.timestamps_s.copy(), "goal": self.goal.copy()}
        return arrays, json.dumps(meta, sort_keys=True)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], metadata_json: str) -> "Episodes":
        """Inverse of :meth:`to_arrays`; raises ``ValueError`` on a missing field, bad JSON or mismatch."""
        try:
            meta = json.loads(metadata_json)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"episodes metadata is not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise ValueError("episodes metadata must be a JSON object")
        version = meta.pop("layout_version", None)
        if version != EPISODES_LAYOUT_VERSION:
            raise ValueError(f"episodes layout_version {version!r} is not supported (expected {EPISODES_LAYOUT_VERSION})")
        missing = [k for k in ("x", "u", "timestamps_s") if k not in arrays]
        if missing:
            raise ValueError(f"episodes arrays lack {missing}")
        ep = cls(arrays["x"], arrays["u"], arrays["timestamps_s"], arrays.get("goal", np.zeros(0)), {})
        dims = {k: meta.pop(k, None) for k in ("n_trials", "horizon_steps", "nx", "nu")}
        actual = {"n_trials": ep.n_trials, "horizon_steps": ep.horizon_steps, "nx": ep.nx, "nu": ep.nu}
        for key, value in dims.items():
            if value is not None and value != actual[key]:
                raise ValueError(f"episodes metadata says {key}={value} but the arrays have {actual[key]}")
        ep.metadata = meta
        return ep
