"""A truncated MCAP file gives back exactly the messages written before the cut."""

import numpy as np
import pytest

from mbrl_ros.data.bags import TYPESTORE, BagError, SegmentedBagWriter, TopicSpec, open_bags, qos, read_raw
from mbrl_ros.data.mcap_salvage import salvage_mcap

JointState = TYPESTORE.types["sensor_msgs/msg/JointState"]
Header = TYPESTORE.types["std_msgs/msg/Header"]
Time = TYPESTORE.types["builtin_interfaces/msg/Time"]


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """An MCAP bag of 3000 joint states (one uncompressed chunk, as rosbags and rosbag2 write by default)."""
    writer = SegmentedBagWriter(tmp_path_factory.mktemp("bags"), [TopicSpec("/joint_states", "sensor_msgs/msg/JointState",
                                                                             qos(reliable=True, depth=10))])
    for i in range(3000):
        msg = JointState(header=Header(stamp=Time(sec=i, nanosec=0), frame_id=""), name=["j1", "j2"],
                         position=np.array([i, -i], dtype=float), velocity=np.zeros(2), effort=np.zeros(2))
        writer.write("/joint_states", 10**9 + i, bytes(TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/JointState")))
    return writer.close_segment("run")


def test_an_intact_file_reads_completely(bag):
    expected = [(t, raw) for _, t, raw in read_raw(open_bags([bag]), ["/joint_states"])]
    scan, messages = salvage_mcap(next(bag.glob("*.mcap")))
    got = [(t, raw) for channel, t, raw in messages]
    assert scan.complete and not scan.damage
    assert got == expected and len(got) == 3000
    assert [c.topic for c in scan.channels.values()] == ["/joint_states"]
    assert scan.channels[1].offered_qos == [qos(reliable=True, depth=10)]


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_a_cut_file_gives_the_messages_before_the_cut(bag, tmp_path, keep):
    expected = [(t, bytes(raw)) for _, t, raw in read_raw(open_bags([bag]), ["/joint_states"])]
    data = next(bag.glob("*.mcap")).read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(keep * len(data))])
    scan, messages = salvage_mcap(cut)
    got = [(t, raw) for _, t, raw in messages]
    assert "truncated" in scan.damage
    assert got == expected[: len(got)], "a prefix of what was written, byte for byte"
    assert len(got) >= int(0.9 * keep * len(expected)) - 1


def test_a_file_cut_in_its_summary_still_holds_every_message(bag, tmp_path):
    expected = [(t, bytes(raw)) for _, t, raw in read_raw(open_bags([bag]), ["/joint_states"])]
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(next(bag.glob("*.mcap")).read_bytes()[:-30])  # the footer is gone, rosbags refuses it
    scan, messages = salvage_mcap(cut)
    assert [(t, raw) for _, t, raw in messages] == expected and scan.complete and not scan.damage


def test_open_bags_reports_a_cut_bag_as_damaged_with_what_is_readable(bag, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "metadata.yaml").write_bytes((bag / "metadata.yaml").read_bytes())
    mcap = next(bag.glob("*.mcap"))
    (copy / mcap.name).write_bytes(mcap.read_bytes()[:150_000])
    bags = open_bags([copy])
    (damaged,) = bags.damaged
    readable = damaged.readable_counts["/joint_states"]
    assert 0 < readable < 3000 and bags.message_counts["/joint_states"] == readable
    assert f"readable: {readable} messages (/joint_states {readable})" in damaged.describe()
    assert len(list(read_raw(bags, ["/joint_states"], include_damaged=True))) == readable
    with pytest.raises(BagError, match="damaged bag.*read only when asked"):
        list(read_raw(bags, ["/joint_states"]))  # an error, not a read that silently misses the bag
