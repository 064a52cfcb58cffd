"""Files from elsewhere are untrusted: bags and checkpoints crafted to break or exploit a loader are
refused with an error that says what is wrong, quickly, within bounded memory, and no code in them
runs (each crafted payload would create a file if it ran)."""

import json
import resource
import shutil
import sqlite3
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from mbrl_ros.data.bags import TYPESTORE, BagError, SegmentedBagWriter, TopicSpec, qos, read_messages
from mbrl_ros.dynamics import serialization as ser

JointState = TYPESTORE.types["sensor_msgs/msg/JointState"]
Header = TYPESTORE.types["std_msgs/msg/Header"]
Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
TOPIC = "/joint_states"
N = 100


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """2 GiB of address space more than the test process has: a loader that believed an absurd
    length and allocated it would fail here with MemoryError rather than take the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (in_use + (2 << 30), hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bag(request, tmp_path_factory):
    writer = SegmentedBagWriter(tmp_path_factory.mktemp(request.param), [TopicSpec(TOPIC, "sensor_msgs/msg/JointState",
                                                                                   qos(reliable=True, depth=10))],
                                storage=request.param)
    for i in range(N):
        msg = JointState(header=Header(stamp=Time(sec=i, nanosec=0), frame_id=""), name=["j1"],
                         position=np.array([float(i)]), velocity=np.zeros(1), effort=np.zeros(1))
        writer.write(TOPIC, 10**9 + i, bytes(TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/JointState")))
    return writer.close_segment("run")


def crafted(bag: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "crafted"
    shutil.copytree(bag, copy)
    return copy


def refused(path: Path, match: str) -> None:
    start = time.monotonic()
    with pytest.raises(BagError, match=match):
        list(read_messages([path], [TOPIC]))
    assert time.monotonic() - start < 5.0


def mcap_records(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, opcode, length) of the top-level records after the 8-byte magic."""
    records, offset = [], 8
    while offset < len(data) - 8:
        opcode, length = data[offset], struct.unpack_from("<Q", data, offset + 1)[0]
        records.append((offset, opcode, length))
        offset += 9 + length
    return records


HEADER, FOOTER, CHUNK = 0x01, 0x02, 0x06


@pytest.mark.parametrize("opcode", [HEADER, CHUNK, FOOTER])
@pytest.mark.parametrize("length", [1 << 31, 1 << 62])
def test_an_mcap_record_with_an_absurd_length_is_read_around_or_refused_never_believed(bag, tmp_path, opcode, length):
    if not list(bag.glob("*.mcap")):
        pytest.skip("an MCAP case")
    copy = crafted(bag, tmp_path)
    (file,) = copy.glob("*.mcap")
    data = bytearray(file.read_bytes())
    offset = next(o for o, op, _ in mcap_records(bytes(data)) if op == opcode)
    struct.pack_into("<Q", data, offset + 1, length)
    file.write_bytes(bytes(data))
    start = time.monotonic()
    try:
        got = [msg.position[0] for _, _, msg in read_messages([copy], [TOPIC])]
    except BagError as err:
        # The index elsewhere in the file no longer agrees with the records: damaged, and it says so.
        assert "damaged" in str(err), err
    else:
        # rosbags reads the messages through the summary's index, which the bad length is not part of.
        assert got == [float(i) for i in range(N)]
    assert time.monotonic() - start < 5.0


def test_a_damaged_bag_is_an_error_not_an_empty_read(bag, tmp_path):
    if not list(bag.glob("*.mcap")):
        pytest.skip("an MCAP case")
    copy = crafted(bag, tmp_path)
    (file,) = copy.glob("*.mcap")
    file.write_bytes(file.read_bytes()[:-30])  # the footer is gone: rosbags cannot open it
    refused(copy, "damaged bag.*readable: 100 messages")
    got = list(read_messages([copy], [TOPIC], include_damaged=True))
    assert len(got) == N, "its intact part, when asked for"


PAYLOAD = '!!python/object/apply:os.system ["touch {marker}"]'


@pytest.mark.parametrize("where", ["metadata.yaml", "metadata.yaml qos", "db3 qos"])
def test_yaml_that_would_run_code_is_refused(bag, tmp_path, where):
    copy = crafted(bag, tmp_path)
    marker = tmp_path / "pwned"
    payload = PAYLOAD.format(marker=marker)
    if where == "metadata.yaml":
        (copy / "metadata.yaml").write_text(payload + "\n")
    elif where == "metadata.yaml qos":
        text = (copy / "metadata.yaml").read_text()
        (copy / "metadata.yaml").write_text(text.replace("offered_qos_profiles:\n", f"offered_qos_profiles: {payload}\n      unused:\n", 1))
    else:
        if not list(copy.glob("*.db3")):
            pytest.skip("a sqlite3 case")
        with sqlite3.connect(next(copy.glob("*.db3"))) as db:
            db.execute("UPDATE topics SET offered_qos_profiles = ?", (payload,))
    refused(copy, "python/object/apply")  # an error naming the tag, whichever way the bag is read
    assert not marker.exists()


def test_a_sqlite3_bag_with_a_message_definition_that_is_code_is_refused(bag, tmp_path):
    copy = crafted(bag, tmp_path)
    if not list(copy.glob("*.db3")):
        pytest.skip("a sqlite3 case")
    marker = tmp_path / "pwned"
    with sqlite3.connect(next(copy.glob("*.db3"))) as db:
        db.execute("UPDATE topics SET type = 'evil_msgs/msg/Evil'")
        db.execute("UPDATE message_definitions SET topic_type = 'evil_msgs/msg/Evil', encoded_message_definition = ?",
                   (f"__import__('os').system('touch {marker}') x\nint32 a",))
    text = (copy / "metadata.yaml").read_text()
    (copy / "metadata.yaml").write_text(text.replace("type: sensor_msgs/msg/JointState", "type: evil_msgs/msg/Evil"))
    start = time.monotonic()
    with pytest.raises(BagError, match="Could not parse"):
        list(read_messages([copy], ["/joint_states"]))
    assert time.monotonic() - start < 5.0 and not marker.exists()


def test_a_message_claiming_a_sequence_of_two_billion_names_is_refused(bag, tmp_path):
    copy = crafted(bag, tmp_path)
    if not list(copy.glob("*.db3")):
        pytest.skip("a sqlite3 case")
    with sqlite3.connect(next(copy.glob("*.db3"))) as db:
        (blob,) = db.execute("SELECT data FROM messages WHERE id = 1").fetchone()
        data = bytearray(blob)
        offset = 4 + 8  # CDR header, stamp
        offset = (offset + 4 + struct.unpack_from("<I", data, offset)[0] + 3) // 4 * 4  # past frame_id
        struct.pack_into("<I", data, offset, 0x7FFFFFFF)
        db.execute("UPDATE messages SET data = ? WHERE id = 1", (bytes(data),))
    refused(copy, "cannot be decoded.*sequence length 2147483647")


def test_a_checkpoint_whose_header_claims_a_terabyte_tensor_is_refused(tmp_path):
    header = json.dumps({"__metadata__": {"mbrl_ros": json.dumps({"kind": "ensemble", "version": 1})},
                         "net.w": {"dtype": "F64", "shape": [1 << 37], "data_offsets": [0, 8 << 37]}}).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    start = time.monotonic()
    with pytest.raises(ser.SerializationError):
        ser.load(str(path))
    assert time.monotonic() - start < 5.0
