"""rosbag2 files through the ``rosbags`` library (no ROS installation needed).

Writing: :class:`SegmentedBagWriter` stores already-serialized CDR messages as they were received
(``rclpy`` serialisation pads empty float64[] fields with bytes rosbags rejects, so a recorder
subscribes raw and writes the bytes untouched) with each topic's QoS in the metadata. Every segment
is a complete bag written under a hidden ``.partial`` name and renamed when closed, so a crash
loses at most the segment in progress and never leaves a half-written bag under a real name. A
segment that cannot be written (a full disk) is deleted and its messages dropped; the writer counts
it and starts the next segment afresh.
Segments are cut by log time, not by arrival: messages are held back for a while in log-time
order, so one that a busy subscriber handles late still lands in the segment its time belongs to.

Reading: :func:`open_bags` takes stock of MCAP or sqlite3 bags (topics, types, offered QoS,
message counts; truncated MCAP files are read up to the damage by :mod:`.mcap_salvage`), then
:func:`read_raw` yields their serialized messages and :func:`read_messages` decoded ones, with
clear errors for missing or unreadable bags and absent topics.
"""

from __future__ import annotations

import heapq
import itertools
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

from .mcap_salvage import salvage_mcap

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
    """Writes raw messages into a sequence of complete bags ``<directory>/<segment name>``.

    A message is written once it is ``hold_s`` older (in log time) than the newest one given, in
    log-time order; :meth:`close_segment` can cut at a log time, keeping later messages for the next
    segment. Holding costs a crash at most ``hold_s`` more of the segment in progress.

    A failed write (``OSError`` such as ENOSPC, sqlite's "database or disk is full") loses the
    segment in progress, not the writer: its partial folder is deleted, its messages until the next
    cut are dropped (``dropped_messages``), :meth:`close_segment` returns ``None`` for it, and the
    next segment tries again. ``write_errors`` counts the failures, ``last_write_error`` says what
    the last one was.
    """

    def __init__(
        self, directory: str | Path, topics: Sequence[TopicSpec], storage: str = "mcap", hold_s: float = 0.0
    ) -> None:
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {sorted(STORAGE)}, got {storage!r}")
        unknown = [t.msgtype for t in topics if t.msgtype not in TYPESTORE.types]
        if unknown:
            raise ValueError(f"message types unknown to the {Stores.ROS2_KILTED.value} typestore: {unknown}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._topics = list(topics)
        self._topic_names = frozenset(t.topic for t in topics)
        self._storage = STORAGE[storage]
        self._writer: Writer | None = None
        self._connections: dict = {}
        self._partial: Path | None = None
        self._hold_ns = int(hold_s * 1e9)
        self._held: list[tuple[int, int, str, bytes]] = []  # heap of (log time, arrival, topic, bytes)
        self._arrivals = itertools.count()
        self._newest_ns: int | None = None
        self.messages_in_segment = 0
        self.closed_segments: list[Path] = []
        self.write_errors = 0
        self.last_write_error = ""
        self.dropped_messages = 0
        self._failed = False  # the segment in progress lost a write: the rest of it is dropped

    def _open(self) -> None:
        self.messages_in_segment = 0
        self._partial = self.directory / f".segment_{len(self.closed_segments):05d}.partial"
        if self._partial.exists():
            shutil.rmtree(self._partial)
        self._writer = Writer(self._partial, version=9, storage_plugin=self._storage)
        self._writer.open()
        self._connections = {
            t.topic: self._writer.add_connection(t.topic, t.msgtype, typestore=TYPESTORE, offered_qos_profiles=[t.offered_qos])
            for t in self._topics
        }

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        """Add one serialized message (CDR bytes as received) with its log time."""
        if topic not in self._topic_names:
            raise ValueError(f"topic {topic!r} is not being recorded; recorded: {sorted(self._topic_names)}")
        if timestamp_ns < 0:
            raise ValueError(f"a bag's log time cannot be negative ({timestamp_ns} ns on {topic})")
        heapq.heappush(self._held, (int(timestamp_ns), next(self._arrivals), topic, bytes(data)))
        self._newest_ns = int(timestamp_ns) if self._newest_ns is None else max(self._newest_ns, int(timestamp_ns))
        self._write_held(self._newest_ns - self._hold_ns)

    def _write_held(self, until_ns: int | None) -> None:
        """Write the held messages logged at or before ``until_ns`` (all for ``None``)."""
        while self._held and (until_ns is None or self._held[0][0] <= until_ns):
            timestamp_ns, _, topic, data = heapq.heappop(self._held)
            if self._failed:
                self.dropped_messages += 1
                continue
            try:
                if self._writer is None:
                    self._open()
                self._writer.write(self._connections[topic], timestamp_ns, data)
            except _WRITE_ERRORS as err:
                self._abandon(err)
                self.dropped_messages += 1
                continue
            self.messages_in_segment += 1

    def _abandon(self, err: Exception) -> None:
        """Give the segment in progress up after a failed write: delete what it has on disk."""
        self.write_errors += 1
        self.last_write_error = f"{self._partial}: {err}"
        self._failed = True
        self.dropped_messages += self.messages_in_segment
        self.messages_in_segment = 0
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
        if self._partial is not None:
            shutil.rmtree(self._partial, ignore_errors=True)

    def _name_storage_files(self, name: str) -> None:
        """rosbags names the storage file after the folder it writes (the hidden partial one): give
        it the bag's final name, in ``metadata.yaml`` too, while the folder is still hidden."""
        metadata = self._partial / "metadata.yaml"
        text = metadata.read_text()
        for data_file in self._partial.glob(f"{self._partial.name}*"):
            final = data_file.with_name(name + data_file.name[len(self._partial.name):])
            os.replace(data_file, final)
            text = text.replace(data_file.name, final.name)
        metadata.write_text(text)

    def close_segment(self, name: str, until_ns: int | None = None) -> Path | None:
        """Finish the segment in progress as ``<directory>/<name>`` with every message logged up to
        ``until_ns`` (all held ones for ``None``); ``None`` if it has no message or could not be
        written."""
        self._write_held(until_ns)
        self._failed = False  # the next segment starts afresh
        if self._writer is None:
            return None
        target = self.directory / name
        if target.exists():
            raise FileExistsError(f"bag {target} already exists")
        try:
            self._writer.close()
            self._writer = None
            self._name_storage_files(name)
        except _WRITE_ERRORS as err:
            self._abandon(err)
            self._failed = False
            return None
        os.replace(self._partial, target)
        self.closed_segments.append(target)
        return target


#: What a storage raises when it cannot write: the file system's errors (ENOSPC, EDQUOT, EIO, ...),
#: sqlite3's ("database or disk is full") and rosbags' own wrapping of either.
_WRITE_ERRORS = (OSError, sqlite3.Error, WriterError)


class BagError(ValueError):
    """A bag that cannot be used; the message says why and what it contains."""


@dataclass(frozen=True)
class DamagedBag:
    """A bag ``rosbags`` cannot open whose MCAP records were read up to the damage."""

    path: Path
    damage: str
    readable_counts: dict[str, int]
    readable_span_s: tuple[float, float] | None

    def describe(self) -> str:
        total = sum(self.readable_counts.values())
        counts = ", ".join(f"{t} {n}" for t, n in sorted(self.readable_counts.items()))
        span = f" from {self.readable_span_s[0]:.3f} to {self.readable_span_s[1]:.3f} s (log time)" if self.readable_span_s else ""
        return f"{self.path}: {self.damage}; readable: {total} messages{f' ({counts})' if counts else ''}{span}"


@dataclass(frozen=True)
class BagSet:
    """Bags opened for reading: every topic (name, type, the QoS it was offered with), the message
    count per topic, and the bags that are damaged (their counts are of the intact part)."""

    paths: tuple[Path, ...]
    topics: dict[str, TopicSpec]
    message_counts: dict[str, int]
    damaged: tuple[DamagedBag, ...]

    def listing(self) -> str:
        """``topic (type, N messages)`` of every topic, or ``no topics``."""
        counts = {t: self.message_counts.get(t, 0) for t in self.topics}
        return ", ".join(
            f"{t} ({s.msgtype}, {counts[t]} message{'s' * (counts[t] != 1)})" for t, s in sorted(self.topics.items())
        ) or "no topics"

    def damage(self) -> str:
        """What is wrong with each damaged bag and what of it is readable ('' when none is)."""
        return " | ".join(d.describe() for d in self.damaged)

    def require(self, topic: str, msgtype: str | None = None) -> TopicSpec:
        """The topic, or a :class:`BagError` listing what the bags have (and, given the type the
        caller needs, which topics carry it)."""
        spec = self.topics.get(topic)
        if spec is None:
            elsewhere = sorted(t for t, s in self.topics.items() if s.msgtype == msgtype)
            wanted = f" ({msgtype})" if msgtype else ""
            hint = f"; {msgtype} is on {', '.join(elsewhere)}" if elsewhere else ""
            damage = f" (damaged: {self.damage()})" if self.damaged else ""
            raise BagError(f"the bag has no {topic} topic{wanted}{hint}. It has: {self.listing()}{damage}")
        return spec

    def check_usable(self, allow_partial: bool, how_to_allow: str) -> None:
        """Raise :class:`BagError` for damaged bags (unless ``allow_partial``; the message ends with
        ``how_to_allow``) and for bags without a single message."""
        if self.damaged and not allow_partial:
            raise BagError("damaged bag: " + self.damage() + f". Only the readable part can be used, and only when asked for ({how_to_allow})")
        if not sum(self.message_counts.values()):
            raise BagError(f"{', '.join(map(str, self.paths))}: the bag holds no messages ({self.listing()})")


def adapted_qos(offers: Sequence[Qos]) -> Qos:
    """The QoS to re-offer a topic with: the recorded publishers' profile when they agree; else, as
    ``ros2 bag play`` chooses, reliable / transient-local only if every one was, the deepest history;
    the default profile (reliable, volatile, depth 10) when the bag recorded none."""
    if not offers:
        return qos(reliable=True, depth=10)
    if all(o == offers[0] for o in offers):
        return offers[0]
    return qos(
        reliable=all(o.reliability == QosReliability.RELIABLE for o in offers),
        depth=max(1, max(o.depth for o in offers)),
        transient_local=all(o.durability == QosDurability.TRANSIENT_LOCAL for o in offers),
    )


def expand_bag_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The bags named by ``paths``: a bag directory, a bag file, or a folder of bags (such as a
    recorder's ``bag_dir``; hidden entries there are segments still being written and are left out)."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise BagError(f"no such bag: {', '.join(missing)}")
    bags: list[Path] = []
    for path in map(Path, paths):
        if path.is_file() or (path / "metadata.yaml").exists() or _storage_files(path):
            bags.extend(_bag_or_its_mcap_files(path))
            continue
        inside = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and
                        ((p / "metadata.yaml").exists() or _storage_files(p)))
        if not inside:
            raise BagError(f"{path} is neither a rosbag2 bag nor a folder of bags (no metadata.yaml, .mcap or .db3 in it)")
        for bag in inside:
            bags.extend(_bag_or_its_mcap_files(bag))
    return bags


def _bag_or_its_mcap_files(path: Path) -> list[Path]:
    """A bag folder that lost its ``metadata.yaml`` (a ``ros2 bag record`` that crashed) cannot be
    opened as a folder, but each of its MCAP files can, as a file of its own."""
    if path.is_dir() and not (path / "metadata.yaml").exists() and _mcap_files(path):
        return _mcap_files(path)
    return [path]


def _storage_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3")) if path.is_dir() else []


def _mcap_files(path: Path) -> list[Path]:
    return [path] if path.suffix == ".mcap" else [p for p in _storage_files(path) if p.suffix == ".mcap"]


def _reader(paths: Sequence[Path]) -> AnyReader:
    reader = AnyReader(list(paths), default_typestore=TYPESTORE)
    reader.open()
    return reader


def open_bags(paths: Sequence[str | Path]) -> BagSet:
    """Open every bag of ``paths`` (see :func:`expand_bag_paths`) and take stock of it.

    A bag ``rosbags`` cannot open is read by :mod:`.mcap_salvage` when it is MCAP (a truncated or
    corrupted file) and listed in ``damaged``; anything else raises
    :class:`BagError`.
    """
    offers: dict[str, list[Qos]] = {}
    types: dict[str, str] = {}
    counts: dict[str, int] = {}
    damaged = []
    bags = expand_bag_paths(paths)
    for path in bags:
        try:
            reader = _reader([path])
        except Exception as err:  # rosbags raises several unrelated types for unreadable files
            if not _mcap_files(path):
                raise BagError(f"cannot read bag {path}: {err}") from err
            damaged.append(_take_stock_of_damaged(path, str(err), types, offers, counts))
            continue
        for c in reader.connections:
            types[c.topic] = c.msgtype
            offers.setdefault(c.topic, []).extend(getattr(c.ext, "offered_qos_profiles", []))
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
        reader.close()
    topics = {t: TopicSpec(t, m, adapted_qos(offers.get(t, []))) for t, m in types.items()}
    return BagSet(tuple(bags), topics, counts, tuple(damaged))


def _take_stock_of_damaged(path: Path, error: str, types: dict, offers: dict, counts: dict) -> DamagedBag:
    readable: dict[str, int] = {}
    first, last = None, None
    reasons = []
    for file in _mcap_files(path):
        scan, messages = salvage_mcap(file)
        for channel, log_ns, _ in messages:
            readable[channel.topic] = readable.get(channel.topic, 0) + 1
            first = log_ns if first is None else min(first, log_ns)
            last = log_ns if last is None else max(last, log_ns)
        for channel in scan.channels.values():
            types[channel.topic] = channel.msgtype
            offers.setdefault(channel.topic, []).extend(channel.offered_qos)
        if scan.damage:
            reasons.append(f"{file.name}: {scan.damage}")
    for topic, n in readable.items():
        counts[topic] = counts.get(topic, 0) + n
    span = (first * 1e-9, last * 1e-9) if first is not None else None
    return DamagedBag(path, "; ".join(reasons) or f"rosbags cannot open it ({error})", readable, span)


def read_raw(bags: BagSet, topics: Sequence[str], include_damaged: bool = False) -> Iterator[tuple[TopicSpec, int, bytes]]:
    """``(topic, log time in ns, CDR bytes)`` of ``topics`` in time order across the bags; with
    ``include_damaged``, the intact messages of damaged bags too (each held in memory to sort it).

    Raises :class:`BagError` when a topic is missing (listing what the bags have), when a bag is
    damaged and ``include_damaged`` is not given (its messages would silently be missing), or when a
    complete bag turns out unreadable midway; the messages yielded before the error are valid.
    """
    for topic in topics:
        bags.require(topic)
    if bags.damaged and not include_damaged:
        raise BagError("damaged bag: " + bags.damage() + ". Its intact messages are read only when asked for (include_damaged)")
    damaged = {d.path for d in bags.damaged}
    complete = [p for p in bags.paths if p not in damaged]
    sources = [_read_complete(complete, bags, topics)] if complete else []
    if include_damaged:
        for path in sorted(damaged):
            intact = [(bags.topics[c.topic], log_ns, raw) for file in _mcap_files(path)
                      for c, log_ns, raw in salvage_mcap(file)[1] if c.topic in topics]
            sources.append(sorted(intact, key=lambda m: m[1]))
    yield from heapq.merge(*sources, key=lambda m: m[1])


def _read_complete(paths: list[Path], bags: BagSet, topics: Sequence[str]) -> Iterator[tuple[TopicSpec, int, bytes]]:
    reader = _reader(paths)
    try:
        connections = [c for c in reader.connections if c.topic in topics]
        try:
            for connection, timestamp, raw in reader.messages(connections=connections):
                yield bags.topics[connection.topic], timestamp, raw
        except Exception as err:
            raise BagError(f"bag is truncated or corrupted: {err}") from err
    finally:
        reader.close()


def bag_topics(paths: Sequence[str | Path]) -> dict[str, str]:
    """Topic → message type of everything in the bags."""
    return {t: s.msgtype for t, s in open_bags(paths).topics.items()}


def read_messages(
    paths: Sequence[str | Path] | BagSet, topics: Sequence[str], include_damaged: bool = False
) -> Iterator[tuple[str, int, object]]:
    """``(topic, log time in ns, decoded message)`` of ``topics`` (see :func:`read_raw`)."""
    bags = paths if isinstance(paths, BagSet) else open_bags(paths)
    for spec, log_ns, raw in read_raw(bags, topics, include_damaged):
        try:
            message = TYPESTORE.deserialize_cdr(raw, spec.msgtype)
        except Exception as err:  # a corrupted payload can fail anywhere in the decoder
            raise BagError(f"a {spec.topic} message cannot be decoded as {spec.msgtype}: {err}") from err
        yield spec.topic, log_ns, message
