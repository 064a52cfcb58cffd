"""rosbag2 bags written and read through rosbags: one complete bag per segment, clear errors."""

import numpy as np
import pytest

from mbrl_ros.data.bags import (
    TYPESTORE, BagError, SegmentedBagWriter, TopicSpec, bag_topics, open_bags, qos, read_messages,
)

JointState = TYPESTORE.types["sensor_msgs/msg/JointState"]
Header = TYPESTORE.types["std_msgs/msg/Header"]
Time = TYPESTORE.types["builtin_interfaces/msg/Time"]


def joint_state_cdr(t_ns: int, q: list[float]) -> bytes:
    msg = JointState(
        header=Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=""),
        name=["j1", "j2"], position=np.array(q, dtype=float), velocity=np.zeros(2), effort=np.zeros(2),
    )
    return bytes(TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


TOPICS = [TopicSpec("/joint_states", "sensor_msgs/msg/JointState", qos(reliable=True, depth=10))]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_segments_are_complete_bags_that_read_back(tmp_path, storage):
    writer = SegmentedBagWriter(tmp_path, TOPICS, storage=storage)
    for i in range(5):
        writer.write("/joint_states", 1_000_000_000 + i * 2_000_000, joint_state_cdr(i * 2_000_000, [i, -i]))
    first = writer.close_segment("trial_0001")
    writer.write("/joint_states", 2_000_000_000, joint_state_cdr(0, [9.0, 9.0]))
    second = writer.close_segment("trial_0002")
    assert writer.close_segment("unused") is None, "no empty bag is written"
    assert bag_topics([first]) == {"/joint_states": "sensor_msgs/msg/JointState"}
    got = [(t, list(m.position)) for _, t, m in read_messages([first], ["/joint_states"])]
    assert got == [(1_000_000_000 + i * 2_000_000, [float(i), float(-i)]) for i in range(5)]
    assert len(list(read_messages([first, second], ["/joint_states"]))) == 6
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert sorted(p.name for p in first.iterdir()) == sorted(["metadata.yaml", "trial_0001" + suffix]), \
        "the storage file carries the bag's name, not the hidden partial one"


def test_segments_are_cut_by_log_time_whatever_the_arrival_order(tmp_path):
    # A busy recorder handles a later trial's messages before the state that ends the previous one.
    writer = SegmentedBagWriter(tmp_path, TOPICS, hold_s=0.5)
    ms = 1_000_000
    arrivals = [10, 30, 20, 60, 40, 50]  # ms of log time, in the order they reach the writer
    for t in arrivals:
        writer.write("/joint_states", t * ms, joint_state_cdr(t * ms, [t, 0.0]))
    assert writer.messages_in_segment == 0, "nothing is written before it is hold_s older than the newest"
    first = writer.close_segment("trial_0001", until_ns=35 * ms)
    writer.write("/joint_states", 700 * ms, joint_state_cdr(700 * ms, [700, 0.0]))
    assert writer.messages_in_segment == 3, "held messages are written once hold_s older than the newest"
    second = writer.close_segment("trial_0002")
    assert [t for _, t, _ in read_messages([first], ["/joint_states"])] == [10 * ms, 20 * ms, 30 * ms]
    assert [t for _, t, _ in read_messages([second], ["/joint_states"])] == [40 * ms, 50 * ms, 60 * ms, 700 * ms]


def test_a_crash_leaves_only_the_segment_in_progress_unreadable(tmp_path):
    writer = SegmentedBagWriter(tmp_path, TOPICS)
    writer.write("/joint_states", 1, joint_state_cdr(1, [0.0, 0.0]))
    done = writer.close_segment("trial_0001")
    writer.write("/joint_states", 2, joint_state_cdr(2, [0.0, 0.0]))  # never closed: the "crash"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0].startswith(".") and names[0].endswith(".partial") and names[1] == "trial_0001"
    assert len(list(read_messages([done], ["/joint_states"]))) == 1


def test_clear_errors(tmp_path):
    writer = SegmentedBagWriter(tmp_path, TOPICS)
    writer.write("/joint_states", 1, joint_state_cdr(1, [0.0, 0.0]))
    bag = writer.close_segment("b")
    with pytest.raises(BagError, match=r"has no /effort topic. It has: /joint_states \(sensor_msgs/msg/JointState, 1 message\)"):
        list(read_messages([bag], ["/effort"]))
    with pytest.raises(BagError, match="no such bag"):
        list(read_messages([tmp_path / "missing"], ["/joint_states"]))
    with pytest.raises(ValueError, match="not being recorded"):
        writer.write("/other", 1, b"")
    with pytest.raises(ValueError, match="cannot be negative"):
        writer.write("/joint_states", -1, b"")
    with pytest.raises(ValueError, match="storage"):
        SegmentedBagWriter(tmp_path, TOPICS, storage="bag")


def test_a_topic_is_reoffered_with_its_publishers_qos():
    from mbrl_ros.data.bags import adapted_qos

    sensor = qos(reliable=False, depth=5)
    latched = qos(reliable=True, depth=10, transient_local=True)
    assert adapted_qos([latched, latched]) == latched, "publishers that agree: their profile as it is"
    mixed = adapted_qos([sensor, latched])
    assert mixed == qos(reliable=False, depth=10, transient_local=False), "reliable / latched only if all were"
    assert adapted_qos([]) == qos(reliable=True, depth=10), "nothing recorded: the default profile"


def test_a_bag_folder_without_metadata_reads_completely(tmp_path):
    writer = SegmentedBagWriter(tmp_path, TOPICS)
    for i in range(5):
        writer.write("/joint_states", 1_000_000_000 + i * 2_000_000, joint_state_cdr(i * 2_000_000, [i, -i]))
    bag = writer.close_segment("crashed_record")
    (bag / "metadata.yaml").unlink()  # what a crashed `ros2 bag record` leaves
    bags = open_bags([tmp_path])
    assert bags.damaged == () and bags.message_counts == {"/joint_states": 5}
    assert len(list(read_messages([bag], ["/joint_states"]))) == 5


@pytest.fixture
def small_disk(tmp_path):
    from _small_disk import mount_small_filesystem, unmount

    where = tmp_path / "disk"
    mount_small_filesystem(where, 2)
    yield where
    unmount(where)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_full_disk_loses_the_segment_in_progress_not_the_writer(small_disk, storage):
    from _small_disk import Filler

    writer = SegmentedBagWriter(small_disk / "bags", TOPICS, storage=storage)
    for i in range(10):
        writer.write("/joint_states", 1_000_000_000 + i * 2_000_000, joint_state_cdr(i, [i, -i]))
    first = writer.close_segment("trial_0001")
    filler = Filler(small_disk / "filler")
    filler.start()
    try:
        assert filler.full.wait(10.0)
        for i in range(5000):  # far more than a page: the storage must write some of it
            writer.write("/joint_states", 2_000_000_000 + i * 2_000_000, joint_state_cdr(i, [i, i]))
        assert writer.close_segment("trial_0002") is None, "a segment that could not be written is no bag"
    finally:
        filler.stop()
    assert writer.write_errors >= 1 and writer.dropped_messages == 5000, (writer.write_errors, writer.dropped_messages)
    assert any(text in writer.last_write_error for text in ("No space left on device", "database or disk is full")), \
        writer.last_write_error
    assert sorted(p.name for p in (small_disk / "bags").iterdir()) == ["trial_0001"], "nothing half-written is left"
    assert len(list(read_messages([first], ["/joint_states"]))) == 10
    # Space again: the next segment is a bag.
    writer.write("/joint_states", 3_000_000_000, joint_state_cdr(0, [1.0, 1.0]))
    third = writer.close_segment("trial_0003")
    assert third is not None and len(list(read_messages([third], ["/joint_states"]))) == 1
