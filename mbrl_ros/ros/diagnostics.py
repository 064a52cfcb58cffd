"""``diagnostic_msgs`` construction shared by every node."""

from __future__ import annotations

from typing import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


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
