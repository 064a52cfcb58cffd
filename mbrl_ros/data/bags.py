"""rosbag2 files through the ``rosbags`` library (no ROS installation needed).

Writing: :class:`SegmentedBagWriter` stores already-serialized CDR messages as they were received
(``rclpy`` serialisation pads empty float64[] fields with bytes rosbags rejects, so a recorder
subscribes raw and writes the bytes untouched) with each topic's QoS in the metadata. Every segment
is a complete bag written under a hidden ``.partial`` name and renamed when closed, so a crash
loses at most the segment in progress and never leaves a half-written bag under a real name.

Reading: :func:`read_messages` yields decoded messages of chosen topics from MCAP or sqlite3 bags,
with clear errors for missing, empty or unreadable bags.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

#: The message definitions of the ROS 2 distribution our wheels come from.
TYPESTORE = get_typestore(Stores.ROS2_KILTED)

STORAGE = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

_ZERO = QosTime(0, 0)


def qos(reliable: bool, depth: int, transient_local: bool = False) -> Qos:
    """A rosbag2 QoS record (what ``ros2 bag play`` uses to re-offer the topic)."""
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=_ZERO,
        lifespan=_ZERO,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_ZERO,
        avoid_ros_namespace_conventions=False,
    )


@dataclass(frozen=True)
class TopicSpec:
    """A topic to record: name, ROS type (``pkg/msg/Type``) and the QoS it is offered with."""

    topic: str
    msgtype: str
    offered_qos: Qos


class SegmentedBagWriter:
    """Writes raw messages into a sequence of complete bags ``<directory>/<segment name>``."""

    def __init__(self, directory: str | Path, topics: Sequence[TopicSpec], storage: str = "mcap") -> None:
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {sorted(STORAGE)}, got {storage!r}")
        unknown = [t.msgtype for t in topics if t.msgtype not in TYPESTORE.types]
        if unknown:
            raise ValueError(f"message types unknown to the {Stores.ROS2_KILTED.value} typestore: {unknown}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._topics = list(topics)
        self._storage = STORAGE[storage]
        self._writer: Writer | None = None
        self._connections: dict = {}
        self._partial: Path | None = None
        self.messages_in_segment = 0
        self.closed_segments: list[Path] = []

    def _open(self) -> None:
        self._partial = self.directory / f".segment_{len(self.closed_segments):05d}.partial"
        if self._partial.exists():
            shutil.rmtree(self._partial)
        self._writer = Writer(self._partial, version=9, storage_plugin=self._storage)
        self._writer.open()
        self._connections = {
            t.topic: self._writer.add_connection(t.topic, t.msgtype, typestore=TYPESTORE, offered_qos_profiles=[t.offered_qos])
            for t in self._topics
        }
        self.messages_in_segment = 0

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        """Append one serialized message (CDR bytes as received) with its receive time."""
        if self._writer is None:
            self._open()
        try:
            connection = self._connections[topic]
        except KeyError:
            raise ValueError(f"topic {topic!r} is not being recorded; recorded: {sorted(self._connections)}") from None
        self._writer.write(connection, int(timestamp_ns), bytes(data))
        self.messages_in_segment += 1

    def close_segment(self, name: str) -> Path | None:
        """Finish the segment in progress as ``<directory>/<name>``; ``None`` if nothing was written."""
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        target = self.directory / name
        if target.exists():
            raise FileExistsError(f"bag {target} already exists")
        os.replace(self._partial, target)
        self.closed_segments.append(target)
        return target


class BagError(ValueError):
    """A bag that cannot be used; the message says why and what it contains."""


def bag_topics(paths: Sequence[str | Path]) -> dict[str, str]:
    """Topic → message type of everything in the bags."""
    reader = _open(paths)
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def _open(paths: Sequence[str | Path]) -> AnyReader:
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise BagError(f"no such bag: {', '.join(missing)}")
    try:
        reader = AnyReader([Path(p) for p in paths], default_typestore=TYPESTORE)
        reader.open()
    except Exception as err:  # rosbags raises several unrelated types for unreadable files
        raise BagError(f"cannot read bag {', '.join(map(str, paths))}: {err}") from err
    return reader


def read_messages(paths: Sequence[str | Path], topics: Sequence[str]) -> Iterator[tuple[str, int, object]]:
    """``(topic, log time in ns, decoded message)`` of ``topics``, in time order across all bags.

    Raises :class:`BagError` when a topic is missing (listing what the bags have) or a message
    cannot be read; the messages yielded before the error are valid.
    """
    reader = _open(paths)
    try:
        present = {c.topic: c.msgtype for c in reader.connections}
        absent = [t for t in topics if t not in present]
        if absent:
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(present.items())) or "none"
            raise BagError(f"bag lacks topics {absent}; it has: {listing}")
        connections = [c for c in reader.connections if c.topic in topics]
        try:
            for connection, timestamp, raw in reader.messages(connections=connections):
                yield connection.topic, timestamp, reader.deserialize(raw, connection.msgtype)
        except Exception as err:
            raise BagError(f"bag is truncated or corrupted: {err}") from err
    finally:
        reader.close()
