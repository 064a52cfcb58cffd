"""Loop timing statistics and ``diagnostic_msgs`` construction shared by every node."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


@dataclass(frozen=True)
class PeriodSummary:
    """Statistics of the intervals between events, in seconds, over a window."""

    count: int
    rate_hz: float
    mean_s: float
    std_s: float
    p99_s: float
    max_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "samples": self.count,
            "rate_hz": self.rate_hz,
            "period_mean_ms": self.mean_s * 1e3,
            "period_std_ms": self.std_s * 1e3,
            "period_p99_ms": self.p99_s * 1e3,
            "period_max_ms": self.max_s * 1e3,
        }


class PeriodStats:
    """Keeps the last ``window`` event times and summarises the periods between them."""

    def __init__(self, window: int = 2000) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, t_s: float) -> None:
        self._times.append(t_s)

    def summary(self) -> PeriodSummary:
        t = np.asarray(self._times)
        if t.size < 2:
            return PeriodSummary(int(t.size), 0.0, float("nan"), float("nan"), float("nan"), float("nan"))
        dt = np.diff(t)
        return PeriodSummary(
            count=int(dt.size),
            rate_hz=float(dt.size / (t[-1] - t[0])) if t[-1] > t[0] else 0.0,
            mean_s=float(dt.mean()),
            std_s=float(dt.std()),
            p99_s=float(np.percentile(dt, 99)),
            max_s=float(dt.max()),
        )


def status(name: str, hardware_id: str, level: bytes, message: str, values: Mapping[str, object]) -> DiagnosticStatus:
    """One ``DiagnosticStatus``; floats are written with 6 significant digits."""

    def text(v: object) -> str:
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=k, value=text(v)) for k, v in values.items()],
    )


def diagnostic_array(stamp, *statuses: DiagnosticStatus) -> DiagnosticArray:
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = list(statuses)
    return msg


def status_values(msg: DiagnosticArray | None, name_prefix: str) -> dict[str, str]:
    """Key/values of the first status in ``msg`` whose name starts with ``name_prefix`` ({} if none)."""
    if msg is None:
        return {}
    for st in msg.status:
        if st.name.startswith(name_prefix):
            return {kv.key: kv.value for kv in st.values}
    return {}
