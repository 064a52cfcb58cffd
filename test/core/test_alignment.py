"""Cutting recorded streams into episodes aligned to the controller period."""

import numpy as np
import pytest

from mbrl_ros.data.alignment import CommandStream, JointMapper, StateStream, TrialMarker, align_trial


def marker(**kw):
    base = dict(event="end", trial=3, iteration=1, start_s=10.0, dt_s=0.05, steps=20, goal=(0.4, 0.0, 0.5),
                joint_names=("a", "b"))
    base.update(kw)
    return TrialMarker(**base)


def linear_states(rate_hz=500.0, t0=9.5, t1=11.5):
    t = np.arange(t0, t1, 1.0 / rate_hz)
    q = np.stack([2.0 * t, -t], axis=1)
    return StateStream(t, q, np.tile([2.0, -1.0], (t.size, 1)))


def test_states_are_interpolated_at_the_control_period():
    m = marker()
    ep = align_trial(linear_states(), CommandStream(np.zeros(0), np.zeros((0, 2))), m, 0.05)
    times = 10.0 + 0.05 * np.arange(21)
    assert ep.x.shape == (1, 21, 4) and ep.u.shape == (1, 20, 2)
    np.testing.assert_allclose(ep.x[0, :, 0], 2.0 * times, atol=1e-9)
    np.testing.assert_allclose(ep.x[0, :, 1], -times, atol=1e-9)
    np.testing.assert_allclose(ep.timestamps_s[0], times - 10.0, atol=1e-12)
    np.testing.assert_allclose(ep.goal, [0.4, 0.0, 0.5])
    assert ep.metadata["trial"] == 3 and ep.metadata["joint_names"] == ["a", "b"]


def test_torque_is_the_command_in_force_mid_step_and_zero_once_stale():
    m = marker(steps=4)
    # Commands at 250 Hz holding step k's value u_k = k, stopping after step 2 (the arm times out).
    t = np.arange(10.0, 10.11, 0.004)
    k = np.floor((t - 10.0) / 0.05 + 1e-9)
    commands = CommandStream(t, np.stack([k, 10 * k], axis=1))
    ep = align_trial(linear_states(), commands, m, command_timeout_s=0.05)
    np.testing.assert_allclose(ep.u[0, :, 0], [0.0, 1.0, 2.0, 0.0])
    np.testing.assert_allclose(ep.u[0, :3, 1], [0.0, 10.0, 20.0])


def test_streams_out_of_time_order_give_the_same_episode():
    # A recorder's send-time estimates can swap neighbouring messages; the episode must not change.
    m = marker(steps=4)
    t = np.arange(10.0, 10.2, 0.004)
    commands = CommandStream(t, np.stack([t, -t], axis=1))  # every tick's torque its own
    states = linear_states()
    states.position = np.sin(states.position)
    in_order = align_trial(states, commands, m, command_timeout_s=0.05)

    def neighbours_swapped(n):
        i = np.arange(n)
        even = n - n % 2
        i[:even] = i[:even].reshape(-1, 2)[:, ::-1].ravel()
        return i

    s, c = neighbours_swapped(states.t_s.size), neighbours_swapped(t.size)
    shuffled = align_trial(StateStream(states.t_s[s], states.position[s], states.velocity[s]),
                           CommandStream(t[c], commands.torque[c]), m, command_timeout_s=0.05)
    np.testing.assert_array_equal(shuffled.x, in_order.x)
    np.testing.assert_array_equal(shuffled.u, in_order.u)


def test_incomplete_streams_are_refused():
    with pytest.raises(ValueError, match="cover"):
        align_trial(linear_states(t1=10.5), CommandStream(np.zeros(0), np.zeros((0, 2))), marker(), 0.05)
    s = linear_states()
    keep = (s.t_s < 10.3) | (s.t_s > 10.5)
    gappy = StateStream(s.t_s[keep], s.position[keep], s.velocity[keep])
    with pytest.raises(ValueError, match="gap"):
        align_trial(gappy, CommandStream(np.zeros(0), np.zeros((0, 2))), marker(), 0.05)


def test_joints_are_mapped_by_name_once_per_name_list():
    mapper = JointMapper(["a", "b"])
    np.testing.assert_array_equal(mapper.index(["c", "a", "b"]), [1, 2])
    np.testing.assert_array_equal(mapper.index(("b", "a")), [1, 0])
    assert mapper.index(["c", "a", "b"]) is mapper.index(("c", "a", "b")), "the index of a name list is cached"
    with pytest.raises(ValueError, match=r"joints \['z'\] are not in the message \(it has \['a', 'b'\]\)"):
        JointMapper(["a", "z"]).index(["a", "b"])


def test_without_a_joint_order_the_first_message_sets_it():
    mapper = JointMapper()
    assert mapper.joint_names is None
    np.testing.assert_array_equal(mapper.index(["b", "a", "c"]), [0, 1, 2])
    assert mapper.joint_names == ("b", "a", "c")
    np.testing.assert_array_equal(mapper.index(["a", "b", "c", "d"]), [1, 0, 2])
    with pytest.raises(ValueError, match=r"\['c'\]"):
        mapper.index(["a", "b"])


def test_trial_markers_round_trip_and_reject_garbage():
    m = marker(event="start")
    assert TrialMarker.from_json(m.to_json()) == m
    for bad in ("{", '{"event": "start"}', m.to_json().replace('"start"', '"middle"'),
                m.to_json().replace('"dt_s": 0.05', '"dt_s": -1')):
        with pytest.raises(ValueError):
            TrialMarker.from_json(bad)
