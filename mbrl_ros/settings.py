"""Settings as frozen dataclasses, described by a table that makes them node parameters (no ROS).

Every component's settings are one frozen dataclass whose field names carry their units
(``dt_s``, ``horizon_steps``). A node's parameters are the fields of its settings class, each
described by a :class:`ParameterInfo` in one table next to the class: meaning, range or choices,
and whether it may change while the node runs. :func:`check_parameters` is the range and choice
check every such class calls from ``__post_init__``; ``mbrl_ros.ros.params.declare_settings``
declares the parameters from the same table, so a value is validated by the same code whether it
comes from a YAML file, the command line or a live ``param set``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ParameterInfo:
    """How one settings field appears as a node parameter.

    Attributes:
        description: what it does, with its unit.
        low, high: inclusive numeric range (both or neither).
        read_only: fixed once the node has started (set it from YAML or ``-p``).
        choices: the accepted values of a string parameter (empty: any string).
    """

    description: str
    low: float | int | None = None
    high: float | int | None = None
    read_only: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.low is None) != (self.high is None):
            raise ValueError(f"give both low and high or neither ({self.description!r})")


def check_parameters(settings, table: dict[str, ParameterInfo]) -> None:
    """Raise ``ValueError`` naming the field when a value of ``settings`` is outside its range or
    not one of its choices; every field of ``settings`` must be described in ``table``."""
    for f in fields(settings):
        if f.name not in table:
            raise ValueError(f"{type(settings).__name__}.{f.name} has no parameter description")
        info = table[f.name]
        value = getattr(settings, f.name)
        if info.choices and value not in info.choices:
            raise ValueError(f"{f.name} must be one of {list(info.choices)}, got {value!r}")
        if info.low is not None and not info.low <= value <= info.high:
            raise ValueError(f"{f.name} must be in [{info.low}, {info.high}], got {value}")
