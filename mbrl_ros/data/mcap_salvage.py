"""Reading the intact part of an MCAP file that ``rosbags`` refuses (truncated or corrupted).

``rosbags`` needs the file's summary and footer, the first things a crash or a cut-off copy loses.
This module walks the records from the front instead and stops at the first one that is cut off or
fails its checksum; everything before it is intact. The records are parsed, decompressed and
checksummed by the ``mcap`` library's :class:`~mcap.stream_reader.StreamReader`. Messages inside a
chunk that is cut off are recovered when the chunk is uncompressed (the ``rosbags`` and rosbag2
default); a cut-off compressed chunk is lost whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Iterator

from mcap.data_stream import ReadDataStream
from mcap.exceptions import EndOfFile, InvalidMagic, McapError
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, DataEnd, McapRecord, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk
from rosbags.interfaces import Qos
from rosbags.rosbag2.metadata import parse_qos
from zstandard import ZstdError


@dataclass(frozen=True)
class SalvagedChannel:
    topic: str
    msgtype: str
    offered_qos: list[Qos]


@dataclass
class SalvageScan:
    """What one pass over the file found: channels by id, whether it met the end-of-data record,
    and why it stopped early (empty: it did not)."""

    channels: dict[int, SalvagedChannel] = field(default_factory=dict)
    complete: bool = False
    damage: str = ""


class _WholeReads:
    """A file whose reads return all the bytes asked for or none, so that the library raises
    ``EndOfFile`` at a record cut short instead of returning it short."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    def read(self, size: int) -> bytes:
        data = self.file.read(size)
        return data if len(data) == size else b""


def _chunk_records(chunk: Chunk) -> list[McapRecord]:
    try:
        return breakup_chunk(chunk, validate_crc=True)
    except EndOfFile as err:  # a whole chunk whose records overrun it
        raise ValueError("a chunk's records run past its end") from err


def _records(file: BinaryIO) -> Iterator[McapRecord]:
    """The records of an MCAP file, those in chunks included, up to its end-of-data record.

    Raises ``EndOfFile`` where the file is cut off, after the whole records of an uncompressed
    chunk cut off there.
    """
    intact = 0
    try:
        for record in StreamReader(_WholeReads(file), emit_chunks=True, validate_crcs=True).records:
            intact = file.tell()
            yield from _chunk_records(record) if isinstance(record, Chunk) else [record]
            if isinstance(record, DataEnd):
                return
    except EndOfFile:
        file.seek(intact)
        chunk = _cut_chunk(file)
        if chunk is not None and not chunk.compression:
            yield from StreamReader(_WholeReads(BytesIO(chunk.data)), skip_magic=True).records
        raise


def _cut_chunk(file: BinaryIO) -> Chunk | None:
    """The chunk that ``file`` ends inside of, with the part of its data the file holds, if it does."""
    stream = ReadDataStream(file)  # reads may come back short
    try:
        if stream.read1() != Opcode.CHUNK:
            return None
        stream.read8()  # the length it was written with
        return Chunk.read(stream)
    except (EndOfFile, struct.error):  # cut before its data
        return None


def salvage_mcap(path: str | Path) -> tuple[SalvageScan, Iterator[tuple[SalvagedChannel, int, bytes]]]:
    """Scan ``path``; returns the scan (filled in as the iterator runs) and an iterator of
    ``(channel, log time ns, raw CDR bytes)`` of every intact message, in file order."""
    scan = SalvageScan()

    def messages() -> Iterator[tuple[SalvagedChannel, int, bytes]]:
        schemas: dict[int, str] = {}
        with open(path, "rb") as file:
            try:
                for record in _records(file):
                    if isinstance(record, Schema):
                        schemas[record.id] = record.name
                    elif isinstance(record, Channel):
                        offered = record.metadata.get("offered_qos_profiles")
                        scan.channels[record.id] = SalvagedChannel(
                            record.topic, schemas.get(record.schema_id, ""), parse_qos(offered) if offered else [])
                    elif isinstance(record, Message) and record.channel_id in scan.channels:
                        yield scan.channels[record.channel_id], record.log_time, record.data
                    elif isinstance(record, DataEnd):
                        scan.complete = True
            except EndOfFile:
                scan.damage = f"the file ends before its end-of-data record ({Path(path).stat().st_size} bytes): truncated"
            except InvalidMagic:
                scan.damage = "not an MCAP file (bad magic)"
            except (McapError, ValueError, RuntimeError, ZstdError) as err:  # RuntimeError: lz4's
                scan.damage = f"corrupted ({err})"

    return scan, messages()
