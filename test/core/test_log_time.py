"""SendTimeLog: a recorder's log time is the send time on the arm's clock, whatever order and delay
the recorder handles messages in."""

import numpy as np

from mbrl_ros.data.log_time import SendTimeLog

MS = 1_000_000
WALL0 = 1_700_000_000_000 * MS  # the senders' system clock (ns since the epoch)


def arm_ns(wall_ns: int, rate: float = 0.25, arm0_ns: int = 60_000 * MS) -> int:
    """The arm's clock (simulated time) running at ``rate`` of the system clock."""
    return int(arm0_ns + rate * (wall_ns - WALL0))


def test_commands_handled_ahead_of_the_joint_states_get_their_send_time_on_the_arm_clock():
    # 2 s of joint states every 8 ms and commands every 5 ms (system time), handled in the worst
    # order a recorder behind by seconds gets them: all commands first, then the states.
    log = SendTimeLog()
    states = [WALL0 + k * 8 * MS for k in range(250)]
    commands = [WALL0 + 3 * MS + k * 5 * MS for k in range(390)]
    out = []
    for c in commands:
        out += log.add(c, fallback_ns=0, key="commands", item=c)
    assert out == [], "nothing is placed before the joint states around it are heard"
    for s in states:
        out += log.add_state(s, arm_ns(s), "joint_states", s)
    placed = {item: t for t, key, item in out if key == "commands"}
    # Sent after the last state: they wait for it (or for max_wait_s).
    assert len(placed) == sum(c <= states[-1] for c in commands)
    errors = np.array([placed[c] - arm_ns(c) for c in placed])
    assert np.abs(errors).max() <= 1, "interpolated between the states sent before and after"
    states_out = [t for t, key, item in out if key == "joint_states"]
    assert states_out == [arm_ns(s) for s in states], "a joint state is logged at its stamp"
    order = [item for _, _, item in out]
    assert order == sorted(order), "handed back in send order"


def test_a_message_sent_after_the_arm_went_silent_is_placed_after_max_wait_at_the_arm_rate():
    log = SendTimeLog(max_wait_s=0.5)
    for k in range(100):
        s = WALL0 + k * 8 * MS
        log.add_state(s, arm_ns(s), "joint_states", None)
    last = WALL0 + 99 * 8 * MS
    sent = last + 100 * MS
    assert log.add(sent, fallback_ns=0, key="trial", item="end") == []
    assert log.due(sent + 499 * MS) == []
    ((t, key, item),) = log.due(sent + 500 * MS)
    assert (key, item) == ("trial", "end") and abs(t - arm_ns(sent)) <= 1, "extrapolated at a quarter of real time"


def test_before_any_joint_state_the_fallback_is_used_and_each_topic_keeps_strictly_increasing_times():
    log = SendTimeLog(max_wait_s=0.0)
    log.add(WALL0, fallback_ns=5 * MS, key="commands", item=1)
    log.add(WALL0 + MS, fallback_ns=5 * MS, key="commands", item=2)  # a clock that has not moved
    out = log.due(WALL0 + MS)
    assert [(t, item) for t, _, item in out] == [(5 * MS, 1), (5 * MS + 1, 2)]
    assert log.remaining() == []


def test_at_shutdown_everything_still_waiting_is_placed():
    log = SendTimeLog(max_wait_s=10.0)
    log.add_state(WALL0, arm_ns(WALL0), "joint_states", None)
    log.add_state(WALL0 + 8 * MS, arm_ns(WALL0 + 8 * MS), "joint_states", None)
    log.add(WALL0 + 20 * MS, fallback_ns=0, key="commands", item="a")
    log.add(WALL0 + 30 * MS, fallback_ns=0, key="commands", item="b")
    out = log.remaining()
    assert [item for _, _, item in out] == ["a", "b"]
    assert [t for t, _, _ in out] == [arm_ns(WALL0 + 20 * MS), arm_ns(WALL0 + 30 * MS)]
