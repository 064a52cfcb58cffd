"""TrialAssembler: the recorder's streams become one episode and one bag cut per trial (fake times, no ROS)."""

import numpy as np
import pytest

from mbrl_ros.data.alignment import CommandStream, StateStream, TrialMarker, align_trial
from mbrl_ros.data.trial_assembly import (
    END_MARKER_WAIT_S,
    IDLE_HISTORY_S,
    MARGIN_S,
    EpisodeReady,
    RecorderNodeSettings,
    TrialAssembler,
    UnalignedTrial,
)

JOINTS = ("j1", "j2", "j3")
DT_S, STEPS = 0.05, 10
STATE_PERIOD_S, COMMAND_PERIOD_S = 0.002, 0.004


def q_of(t):
    return np.array([np.sin(t), 0.5 * t, -t * t])


def qd_of(t):
    return np.array([np.cos(t), 0.5, -2.0 * t])


def torque_at(t, start_s):
    """Each control step's own torque, held from the step's start."""
    k = np.floor((t - start_s) / DT_S + 1e-9)
    return np.array([1.0, -2.0, 0.5]) * (k + 1)


def marker(event, trial=3, start_s=10.0, iteration=1):
    return TrialMarker(event, trial, iteration, start_s, DT_S, STEPS, (0.4, 0.0, 0.5), JOINTS, "test")


def ns(t_s):
    return int(round(t_s * 1e9))


def trial_events(start_s=10.0, trial=3, t0=None, t1=None, order=(2, 0, 1)):
    """Events of one trial in the order the recorder handles them when it keeps up (by time):
    joint states at 500 Hz (stamped, joints listed in ``order``), commands at 250 Hz during the
    trial (log times), the start marker 10 ms before the trial and the end marker 1 ms after it."""
    t0 = start_s - 0.5 if t0 is None else t0
    t1 = start_s + STEPS * DT_S + 0.02 if t1 is None else t1
    names = tuple(JOINTS[j] for j in order)
    timed = [(t, 0, ("state", t, names, np.concatenate([q_of(t)[list(order)], qd_of(t)[list(order)]])))
             for t in np.arange(t0, t1, STATE_PERIOD_S)]
    timed += [(t, 1, ("command", ns(t), torque_at(t, start_s)))
              for t in np.arange(start_s, start_s + STEPS * DT_S - 1e-9, COMMAND_PERIOD_S)]
    timed += [(start_s - 0.01, 1, ("marker", ns(start_s - 0.01), marker("start", trial, start_s))),
              (start_s + STEPS * DT_S + 0.001, 1, ("marker", ns(start_s + STEPS * DT_S + 0.001), marker("end", trial, start_s)))]
    return [event for _, _, event in sorted(timed, key=lambda e: (e[0], e[1]))]


def feed(assembler, events):
    finished = []
    for kind, *args in events:
        if kind == "state":
            finished += assembler.add_state(*args)
        elif kind == "command":
            assembler.add_command(*args)
        else:
            finished += assembler.add_marker(*args)
    return finished


def expected_episode(start_s=10.0, trial=3):
    """align_trial on the whole streams, in the marker's joint order."""
    t = np.arange(start_s - 0.5, start_s + STEPS * DT_S + 0.02, STATE_PERIOD_S)
    c = np.arange(start_s, start_s + STEPS * DT_S - 1e-9, COMMAND_PERIOD_S)
    states = StateStream(t, np.stack([q_of(v) for v in t]), np.stack([qd_of(v) for v in t]))
    commands = CommandStream(np.array([ns(v) * 1e-9 for v in c]), np.stack([torque_at(v, start_s) for v in c]))
    return align_trial(states, commands, marker("end", trial, start_s), command_timeout_s=0.05)


def test_the_bag_holds_the_first_state_after_the_end_which_the_last_step_interpolates_towards():
    # States 0.5 ms off the steps' grid, the end marker logged 0.2 ms after the end: the trial is
    # complete with the state 0.5 ms after the end, and a bag cut at the marker would lack it (its
    # episode, made again from the bag, would end on a held state instead of the interpolated one).
    start_s = 10.0
    events = [e for e in trial_events(t0=start_s - 0.4995) if not (e[0] == "marker" and e[2].event == "end")]
    end_s = start_s + STEPS * DT_S
    events.insert(next(i for i, e in enumerate(events) if e[0] == "state" and e[1] > end_s),
                  ("marker", ns(end_s + 0.0002), marker("end")))
    (ready,) = feed(TrialAssembler(command_timeout_s=0.05), events)
    first_after = min(e[1] for e in events if e[0] == "state" and e[1] >= end_s)
    assert ns(first_after) <= ready.bag_until_ns < ns(first_after + STATE_PERIOD_S)


def test_a_trial_becomes_one_episode_and_one_bag_cut_at_its_end():
    assembler = TrialAssembler(command_timeout_s=0.05)
    events = trial_events()
    end_marker = next(i for i, e in enumerate(events) if e[0] == "marker" and e[2].event == "end")
    assert feed(assembler, events[:end_marker]) == [], "nothing before the end marker"
    assert assembler.open_trials == 1
    finished = feed(assembler, events[end_marker:])
    assert assembler.open_trials == 0
    assert len(finished) == 1 and isinstance(finished[0], EpisodeReady)
    ready = finished[0]
    assert ready.bag_name == "trial_0003" and ready.marker == marker("end")
    # The bag holds everything logged up to the end marker (logged 1 ms after the trial's end).
    assert ready.bag_until_ns == ns(10.0 + STEPS * DT_S + 0.001)
    expected = expected_episode()
    np.testing.assert_array_equal(ready.episode.x, expected.x)
    np.testing.assert_array_equal(ready.episode.u, expected.u)
    # Torques are each step's command, states are in the marker's joint order (the stream's was j3, j1, j2).
    np.testing.assert_allclose(ready.episode.u[0], np.stack([torque_at(10.0 + k * DT_S, 10.0) for k in range(STEPS)]))
    np.testing.assert_allclose(ready.episode.x[0, 4, :3], q_of(10.0 + 4 * DT_S), atol=1e-5)
    assert ready.episode.metadata["trial"] == 3 and ready.episode.metadata["joint_names"] == list(JOINTS)


def test_an_end_marker_handled_before_the_last_states_waits_for_them():
    events = trial_events()
    end_marker = next(i for i, e in enumerate(events) if e[0] == "marker" and e[2].event == "end")
    last_states = [i for i, e in enumerate(events) if e[0] == "state" and 10.45 < e[1] < 10.5 + 1e-9]
    early = [events[end_marker]] + [e for i, e in enumerate(events) if i != end_marker]
    assembler = TrialAssembler()
    finished = []
    for i, event in enumerate(early):
        out = feed(assembler, [event])
        if out:
            assert event[0] == "state" and event[1] >= 10.5 - 1e-9, "finished by the first state at its end"
        finished += out
    assert len(last_states) > 20 and len(finished) == 1
    np.testing.assert_array_equal(finished[0].episode.x, expected_episode().x)


def test_an_out_of_order_stream_gives_the_same_episode():
    in_order = feed(TrialAssembler(), trial_events())
    events = trial_events()
    trigger = next(i for i, e in enumerate(events) if e[0] == "state" and e[1] >= 10.0 + STEPS * DT_S)
    before, after = events[:trigger], events[trigger:]
    # Neighbouring states swapped, every command handled late (after the states of the next step),
    # the start marker handled after the trial's first states.
    states = [e for e in before if e[0] == "state"]
    states = [s for pair in zip(states[1::2], states[0::2]) for s in pair] + states[len(states) - len(states) % 2:]
    commands = [e for e in before if e[0] == "command"]
    markers = [e for e in before if e[0] == "marker"]
    shuffled = states[:300] + markers[:1] + states[300:]
    for i, command in enumerate(commands):
        shuffled.insert(min(len(shuffled), 320 + 40 * i), command)
    shuffled += markers[1:]
    out_of_order = feed(TrialAssembler(), shuffled + after)
    assert len(in_order) == len(out_of_order) == 1
    np.testing.assert_array_equal(out_of_order[0].episode.x, in_order[0].episode.x)
    np.testing.assert_array_equal(out_of_order[0].episode.u, in_order[0].episode.u)
    assert out_of_order[0].bag_until_ns == in_order[0].bag_until_ns


def test_a_trial_whose_states_have_a_gap_is_reported_not_published():
    events = [e for e in trial_events() if not (e[0] == "state" and 10.2 < e[1] < 10.3)]  # 100 ms lost
    finished = feed(TrialAssembler(), events)
    assert len(finished) == 1 and isinstance(finished[0], UnalignedTrial)
    assert finished[0].marker.trial == 3 and "gap of 0.10" in finished[0].reason


def test_history_is_pruned_while_no_trial_is_open_and_kept_while_one_is():
    assembler = TrialAssembler()
    feed(assembler, [("state", t, JOINTS, np.zeros(6)) for t in np.arange(0.0, 30.0, 0.01)])
    assert IDLE_HISTORY_S <= assembler.history_s <= IDLE_HISTORY_S + 2 * MARGIN_S
    # A long trial is open from 31 s on: its states are all kept (from a margin before its start).
    long = TrialMarker("start", 9, 0, 31.0, DT_S, 400, (), JOINTS, "test")
    assembler.add_marker(ns(30.99), long)
    feed(assembler, [("state", t, JOINTS, np.zeros(6)) for t in np.arange(30.0, 45.0, 0.01)])
    assert assembler.history_s >= 45.0 - 0.01 - (31.0 - MARGIN_S) - 1e-9
    assembler.add_marker(ns(51.0), TrialMarker("end", 9, 0, 31.0, DT_S, 400, (), JOINTS, "test"))
    finished = feed(assembler, [("state", t, JOINTS, np.zeros(6)) for t in np.arange(45.0, 70.0, 0.01)])
    assert [type(f) for f in finished] == [EpisodeReady]
    assert assembler.history_s <= IDLE_HISTORY_S + 2 * MARGIN_S, "pruned again once the trial is done"


def test_a_trial_that_never_ends_is_given_up_and_history_is_pruned_again():
    assembler = TrialAssembler()
    events = [e for e in trial_events() if not (e[0] == "marker" and e[2].event == "end")]  # aborted: no end marker
    assert feed(assembler, events) == [] and assembler.open_trials == 1
    later = 10.0 + STEPS * DT_S + END_MARKER_WAIT_S
    finished = feed(assembler, [("state", t, JOINTS, np.zeros(6)) for t in np.arange(10.6, later + 10.0, 0.01)])
    assert len(finished) == 1 and isinstance(finished[0], UnalignedTrial) and "no end marker" in finished[0].reason
    assert assembler.open_trials == 0 and assembler.history_s <= IDLE_HISTORY_S + 2 * MARGIN_S
    assert assembler.add_marker(ns(later + 10.0), marker("end")) == [], "an end marker later still: reported once"


def test_a_restarted_trial_number_is_a_new_trial_with_its_own_bag():
    assembler = TrialAssembler()
    first = feed(assembler, trial_events(start_s=10.0, trial=1))
    # The controller restarts and numbers from 1 again; the old run's end marker, handled late,
    # must not end the new trial 1, and a repeat of it must not publish the old trial again.
    events = trial_events(start_s=20.0, trial=1)
    start = next(i for i, e in enumerate(events) if e[0] == "marker")
    events.insert(start + 10, ("marker", ns(20.0), marker("end", 1, 10.0)))
    second = feed(assembler, events)
    assert [type(f) for f in first + second] == [EpisodeReady, EpisodeReady]
    assert [f.bag_name for f in first + second] == ["trial_0001", "trial_0001_2"]
    assert second[0].marker.start_s == 20.0
    np.testing.assert_array_equal(second[0].episode.x, expected_episode(start_s=20.0, trial=1).x)


def test_joint_states_missing_a_trial_joint_are_reported_naming_it():
    events = [(e[0], e[1], e[2][:2], np.concatenate([e[3][:2], e[3][3:5]])) if e[0] == "state" else e
              for e in trial_events(order=(0, 1, 2))]
    (finished,) = feed(TrialAssembler(), events)
    assert isinstance(finished, UnalignedTrial) and "'j3'" in finished.reason


def test_the_command_timeout_applies_as_set():
    events = [e for e in trial_events() if not (e[0] == "command" and e[1] > ns(10.2))]  # commands stop after 0.2 s
    (patient,) = feed(TrialAssembler(command_timeout_s=10.0), events)
    strict = TrialAssembler(command_timeout_s=10.0)
    strict.command_timeout_s = 0.05  # a live parameter change
    (timed_out,) = feed(strict, events)
    last = torque_at(10.2, 10.0)
    np.testing.assert_array_equal(patient.episode.u[0, -1], last)  # the last command held to the end
    np.testing.assert_array_equal(timed_out.episode.u[0, -1], np.zeros(3))  # the arm applied zero


def test_recorder_settings_check_their_ranges_and_choices():
    assert RecorderNodeSettings().command_timeout_s == 0.05
    with pytest.raises(ValueError, match="storage must be one of"):
        RecorderNodeSettings(storage="csv")
    with pytest.raises(ValueError, match="command_timeout_s must be in"):
        RecorderNodeSettings(command_timeout_s=0.0)


def test_an_old_runs_end_marker_does_not_end_the_open_trial_of_the_same_number():
    # A trial longer than the idle history: were it taken for ended, its first states would be pruned.
    long_start = TrialMarker("start", 1, 0, 20.0, DT_S, 200, (), JOINTS, "test")
    long_end = TrialMarker("end", 1, 0, 20.0, DT_S, 200, (), JOINTS, "test")
    old_end = TrialMarker("end", 1, 0, 5.0, DT_S, 200, (), JOINTS, "test")  # the previous run's trial 1
    assembler = TrialAssembler()
    states = [("state", t, JOINTS, np.concatenate([q_of(t), qd_of(t)])) for t in np.arange(19.0, 30.5, 0.01)]
    events = [("marker", ns(19.99), long_start)] + states[:200] + [("marker", ns(21.0), old_end)] + states[200:]
    finished = feed(assembler, events)
    assert [type(f) for f in finished] == [UnalignedTrial], "the old trial's states are long gone"
    assert assembler.open_trials == 1, "trial 1 of this run is still open"
    (ready,) = feed(assembler, [("marker", ns(30.001), long_end)])
    assert isinstance(ready, EpisodeReady) and ready.marker.start_s == 20.0
    np.testing.assert_allclose(ready.episode.x[0, 0, :3], q_of(20.0), atol=1e-4)


def test_trials_finished_together_come_oldest_first():
    first, second = marker("end", trial=1, start_s=10.0), marker("end", trial=2, start_s=10.6)
    assembler = TrialAssembler()
    assembler.add_marker(ns(11.2), second)  # handled before the older trial's end marker
    assembler.add_marker(ns(11.2), first)
    finished = assembler.add_state(11.2, JOINTS, np.zeros(6))  # late states: the first one is past both ends
    assert [f.marker.trial for f in finished] == [1, 2]


def test_the_newest_state_counts_not_the_last_handled():
    assembler = TrialAssembler()
    events = [e for e in trial_events() if not (e[0] == "marker" and e[2].event == "end")]
    trigger = next(i for i, e in enumerate(events) if e[0] == "state" and e[1] >= 10.5 - 1e-9)
    events[trigger - 1], events[trigger] = events[trigger], events[trigger - 1]  # the last two states swapped
    feed(assembler, events[:trigger + 1])
    (ready,) = assembler.add_marker(ns(10.501), marker("end"))
    np.testing.assert_array_equal(ready.episode.x, expected_episode().x)


def test_an_aborted_trial_is_given_up_when_the_next_one_starts():
    assembler = TrialAssembler()
    aborted = [e for e in trial_events(start_s=10.0, trial=1) if not (e[0] == "marker" and e[2].event == "end")]
    assert feed(assembler, aborted) == [] and assembler.open_trials == 1
    finished = feed(assembler, trial_events(start_s=11.0, trial=2, t0=10.52))
    assert [type(f) for f in finished] == [UnalignedTrial, EpisodeReady]
    assert finished[0].marker.trial == 1 and "trial 2 started before its end marker came" in finished[0].reason
    assert finished[1].marker.trial == 2
    assert assembler.add_marker(ns(12.0), marker("end", 1, 10.0)) == [], "its end marker, late, starts nothing"


def test_a_trial_the_controller_aborts_gives_no_episode_and_frees_the_recorder():
    assembler = TrialAssembler()
    events = [e for e in trial_events(start_s=10.0, trial=1) if not (e[0] == "marker" and e[2].event == "end")]
    assert feed(assembler, events) == [] and assembler.open_trials == 1
    assert assembler.add_marker(ns(10.52), marker("abort", 1, 10.0)) == [] and assembler.open_trials == 0
    (ready,) = feed(assembler, trial_events(start_s=11.0, trial=2, t0=10.52))
    assert isinstance(ready, EpisodeReady) and ready.marker.trial == 2, "the next trial is not reported as lost"
    assert assembler.add_marker(ns(12.0), marker("end", 1, 10.0)) == [], "an aborted trial is never aligned"
