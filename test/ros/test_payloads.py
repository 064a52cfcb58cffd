"""Episode/model payloads and trial markers on standard messages: round trips and rejections."""

import json

import numpy as np
import pytest
import safetensors.numpy
from std_msgs.msg import String

from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.ros import payloads
from mbrl_ros.ros.conversions import InvalidMessage


def episodes(n=2, t=5, nx=4, nu=2):
    rng = np.random.default_rng(0)
    return Episodes(
        rng.normal(size=(n, t + 1, nx)), rng.normal(size=(n, t, nu)), np.tile(np.arange(t + 1) * 0.05, (n, 1)),
        np.array([0.4, 0.1, 0.5]), {"iteration": 2, "joint_names": ["a", "b"]},
    )


def test_episodes_round_trip_exactly():
    ep = episodes()
    back = payloads.decode_episodes(payloads.encode_episodes(ep))
    for field in ("x", "u", "timestamps_s", "goal"):
        np.testing.assert_array_equal(getattr(back, field), getattr(ep, field))
    assert back.metadata == ep.metadata


def raw_document(arrays, meta_json: str) -> bytes:
    """An episodes document written without the encoder's checks (to carry what it would refuse)."""
    header = {"mbrl_ros": json.dumps({"kind": "episodes", "version": 1, "episodes": meta_json})}
    return safetensors.numpy.save({k: v.astype(float) for k, v in arrays.items()}, metadata=header)


def test_bad_episode_payloads_are_rejected_with_a_reason():
    good = payloads.encode_episodes(episodes())

    relabelled = payloads.encode_episodes(episodes())
    relabelled.layout.dim[0].label = "mbrl_ros/episodes/v0"
    with pytest.raises(InvalidMessage, match="layout"):
        payloads.decode_episodes(relabelled)

    truncated = payloads.bytes_msg(payloads.EPISODES_LABEL, bytes(good.data)[:-16])
    with pytest.raises(InvalidMessage, match="bad episodes payload"):
        payloads.decode_episodes(truncated)

    arrays, meta = episodes().to_arrays()
    arrays["x"][0, 0, 0] = np.nan
    nan_msg = payloads.bytes_msg(payloads.EPISODES_LABEL, raw_document(arrays, meta))
    with pytest.raises(InvalidMessage, match="non-finite"):
        payloads.decode_episodes(nan_msg)

    arrays, meta = episodes().to_arrays()
    arrays["u"] = arrays["u"][:, :-1]
    shape_msg = payloads.bytes_msg(payloads.EPISODES_LABEL, raw_document(arrays, meta))
    with pytest.raises(InvalidMessage, match="u must have shape"):
        payloads.decode_episodes(shape_msg)

    lying = payloads.encode_episodes(episodes())
    lying.layout.dim[0].size += 1
    with pytest.raises(InvalidMessage, match="declares"):
        payloads.decode_episodes(lying)


def test_trial_markers_travel_as_json_strings():
    marker = TrialMarker("start", 1, 0, 12.5, 0.05, 100, (0.4, 0.0, 0.5), ("j1",), "lqr_flm")
    assert payloads.decode_trial_marker(payloads.trial_marker_msg(marker)) == marker
    with pytest.raises(InvalidMessage):
        payloads.decode_trial_marker(String(data="not json"))


def test_a_payload_whose_bytes_changed_is_refused_by_its_checksum():
    msg = payloads.encode_episodes(episodes())
    data = bytearray(msg.data)
    data[-3] ^= 0x10  # a float in x: still a valid document
    msg.data = bytes(data)
    with pytest.raises(InvalidMessage, match="checksum"):
        payloads.decode_episodes(msg)


def test_a_payload_for_another_arm_is_refused_given_the_arms_joints():
    ep = episodes()  # joints a, b: nx 4, nu 2
    assert payloads.decode_episodes(payloads.encode_episodes(ep), ["a", "b"]).nx == 4
    with pytest.raises(InvalidMessage, match="dimensions"):
        payloads.decode_episodes(payloads.encode_episodes(ep), ["a", "b", "c"])
    with pytest.raises(InvalidMessage, match="for joints"):
        payloads.decode_episodes(payloads.encode_episodes(ep), ["b", "a"])


def test_metadata_of_the_wrong_type_is_refused():
    arrays, meta = episodes().to_arrays()
    inner = json.loads(meta)
    inner["iteration"] = [2]
    msg = payloads.bytes_msg(payloads.EPISODES_LABEL, raw_document(arrays, json.dumps(inner)))
    with pytest.raises(InvalidMessage, match="'iteration' is '\\[2\\]', expected int"):
        payloads.decode_episodes(msg)
