"""The controller's learning run without ROS: every phase transition, lost trials, the hand-over and
plan acceptance, driven by a fake clock and a toy arm (independent joints of the Panda's inertias
at rest, ``M qdd = u``, integrated at the torque rate)."""

import numpy as np
import pytest

from mbrl_ros.control.controller_settings import ControllerSettings
from mbrl_ros.control.costs import CostSettings, ReachCost
from mbrl_ros.control.learning_run import LearningRun, Phase
from mbrl_ros.control.policy import LinearFeedbackPolicy
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.tvlg import fit_tvlg

from _control_toys import PlanarChain

NQ = 7
INERTIA = np.array([0.59, 1.80, 1.11, 0.81, 0.050, 0.045, 0.004])
LIMIT = np.array([87.0] * 4 + [12.0] * 3)
TICK_S = 0.004
GOAL = (0.5, 0.3, 0.0)


class RecordingIO:
    """The node's side: records markers, resets and reports; the recorder can be made deaf."""

    def __init__(self) -> None:
        self.markers, self.reports, self.resets = [], [], 0
        self.listening = True

    def publish_marker(self, marker) -> None:
        self.markers.append(marker)

    def request_reset(self) -> bool:
        self.resets += 1
        return True

    def recorder_listening(self) -> bool:
        return self.listening

    def report(self, message: str) -> None:
        self.reports.append(message)

    def events(self) -> list[tuple[str, int]]:
        return [(m.event, m.trial) for m in self.markers]


class Harness:
    """A run ticked at 250 Hz on a fake clock while the toy arm integrates the torques it returns."""

    def __init__(self, reset_service: bool = True, **settings) -> None:
        defaults = dict(mode="lqr_flm", final_mode="ilqr", trial_steps=5, trials_per_iteration=2, iterations=2,
                        settle_s=0.1, episode_timeout_s=1.0, goal_xyz_m=GOAL)
        self.settings = ControllerSettings(**{**defaults, **settings})
        self.q0 = np.asarray(self.settings.initial_positions_rad)
        self.kinematics = PlanarChain([0.15] * NQ)
        cost = ReachCost(CostSettings(ee_target_m=GOAL, ee_weight=10.0), self.kinematics, self.q0 - 3, self.q0 + 3,
                         1e-3 / INERTIA)
        self.io = RecordingIO()
        self.run = LearningRun(self.settings, np.diag(INERTIA), cost, self.kinematics.ee_position, LIMIT,
                               [f"j{i}" for i in range(NQ)], self.io, has_reset_service=reset_service)
        self.now = 0.0
        self.x = np.concatenate([self.q0, np.zeros(NQ)])
        self.fresh = True
        self.torques: list[tuple[np.ndarray, bool]] = []
        self.states: list[np.ndarray] = []

    def tick(self, n: int = 1) -> tuple[np.ndarray, bool]:
        for _ in range(n):
            self.now += TICK_S
            self.states.append(self.x.copy())
            u, from_plan = self.run.tick(self.now, self.x.copy(), self.now if self.fresh else self.now - 1.0)
            self.torques.append((u, from_plan))
            self.x[NQ:] += TICK_S * u / INERTIA
            self.x[:NQ] += TICK_S * self.x[NQ:]
        return self.torques[-1]

    def until(self, predicate, max_s: float = 30.0) -> None:
        deadline = self.now + max_s
        while not predicate():
            assert self.now < deadline, f"still in {self.run.phase} after {max_s} s"
            self.tick()

    def reset_done(self) -> None:
        self.x = np.concatenate([self.q0, np.zeros(NQ)])
        self.run.on_reset_done(True, self.now)

    def episodes_of(self, iteration: int, n: int, seed: int = 0) -> list[Episodes]:
        """``n`` trials of the run's current controller on the toy arm (zero-order hold at dt_s)."""
        rng = np.random.default_rng(seed)
        policy, T, dt = self.run.trainer.policy, self.settings.trial_steps, self.settings.dt_s
        out = []
        for _ in range(n):
            x = np.zeros((T + 1, 2 * NQ))
            x[0, :NQ] = self.q0 + 0.01 * rng.standard_normal(NQ)
            u = np.zeros((T, NQ))
            for t in range(T):
                u[t] = policy.action(x[t], t, rng.standard_normal(NQ))
                qd = x[t, NQ:] + dt * u[t] / INERTIA
                x[t + 1] = np.concatenate([x[t, :NQ] + dt * qd, qd])
            out.append(Episodes(x[None], u[None], (dt * np.arange(T + 1))[None], np.asarray(GOAL),
                                {"mode": "lqr_flm", "iteration": iteration}))
        return out

    def deliver_iteration(self, iteration: int, n: int | None = None) -> None:
        episodes = self.episodes_of(iteration, self.settings.trials_per_iteration if n is None else n)
        for e in episodes:
            self.run.on_episodes(e)
        self.run.on_local_model(iteration, fit_tvlg(Episodes.concatenate(episodes)), model_version=iteration + 1)

    def run_trials(self, n: int) -> None:
        """Reset, settle and run ``n`` trials (answering every reset request)."""
        for _ in range(n):
            self.until(lambda: self.run.phase is Phase.RETURNING or self.run.phase is Phase.TRIAL)
            if self.run.phase is Phase.RETURNING:
                self.tick()
                self.reset_done()
            self.until(lambda: self.run.phase is Phase.TRIAL)
            self.until(lambda: self.run.phase is not Phase.TRIAL)


#: Where the harness's arm rests at the start: a plan's nominal unless a test says otherwise.
START_X = np.concatenate([ControllerSettings().initial_positions_rad, np.zeros(NQ)])


def plan(t0_s: float, T: int = 10, dt_s: float = 0.05, u: float = 1.0, x_hat=None) -> LinearFeedbackPolicy:
    X = np.tile(START_X if x_hat is None else x_hat, (T + 1, 1))
    return LinearFeedbackPolicy(X, np.full((T, NQ), u), None, None, t0_s=t0_s, dt_s=dt_s)


def test_an_iteration_runs_its_trials_from_reset_updates_and_starts_the_next():
    h = Harness()
    assert h.run.phase is Phase.RETURNING
    u, _ = h.tick()
    assert h.io.resets == 1 and np.all(u == 0.0), "zero torque while the reset service resets the arm"
    h.tick(10)
    assert h.io.resets == 1, "one request per return"
    h.reset_done()
    assert h.run.phase is Phase.SETTLING
    h.tick(int(0.1 / TICK_S) - 2)
    assert h.run.phase is Phase.SETTLING, "settles settle_s"
    h.until(lambda: h.run.phase is Phase.TRIAL)
    start = h.io.markers[-1]
    assert (start.event, start.trial, start.iteration, start.steps) == ("start", 1, 0, 5)
    h.until(lambda: h.run.phase is not Phase.TRIAL)
    assert h.io.markers[-1].event == "end" and h.now - start.start_s == pytest.approx(5 * 0.05, abs=TICK_S + 1e-9)
    assert h.run.phase is Phase.RETURNING, "the next trial starts from the start configuration"
    h.run_trials(1)
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.UPDATING)
    assert h.io.events() == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    assert h.run.take_update() is None, "no update before the episodes and the local model"
    assert "local model of iteration 0" in h.run.waiting_for(h.now) and "2 episode(s)" in h.run.waiting_for(h.now)
    h.deliver_iteration(0)
    job = h.run.take_update()
    assert job is not None and job.episodes.n_trials == 2 and h.run.take_update() is None, "one job per iteration"
    before = h.run.trainer.policy
    report = h.run.run_update(job)
    assert report.error is None and report.switch_to_mode is None
    assert report.progress["iteration"] == 0 and report.progress["trials"] == 2
    assert h.run.trainer.policy is not before and h.run.iteration == 1
    assert h.run.phase is Phase.RETURNING
    h.run_trials(1)
    assert h.io.markers[-1].iteration == 1


def test_a_reset_call_that_is_never_answered_is_made_again_and_a_late_answer_counts_once():
    from mbrl_ros.control.learning_run import RESET_TIMEOUT_S

    h = Harness()
    h.tick()
    assert h.io.resets == 1
    h.until(lambda: h.io.resets == 2, max_s=RESET_TIMEOUT_S + 1.0)
    assert RESET_TIMEOUT_S <= h.now <= RESET_TIMEOUT_S + 0.1 and h.run.diagnostics()["reset_retries"] == 1
    assert h.run.phase is Phase.RETURNING and all(np.all(u == 0.0) for u, _ in h.torques), "zero torque meanwhile"
    h.reset_done()  # the second call's answer
    assert h.run.phase is Phase.SETTLING
    h.run.on_reset_done(True, h.now)  # the first call's, late: nothing more happens
    assert h.run.phase is Phase.SETTLING and h.io.resets == 2


def test_without_a_reset_service_a_pd_drives_the_arm_back_before_it_settles():
    h = Harness(reset_service=False)
    h.x[:NQ] += np.array([0.3, -0.2, 0.2, 0.1, -0.3, 0.2, 0.4])
    u, _ = h.tick()
    assert np.all(u != 0.0) and h.io.resets == 0
    h.until(lambda: h.run.phase is Phase.SETTLING, max_s=5.0)
    assert np.max(np.abs(h.x[:NQ] - h.q0)) < h.settings.start_tolerance_rad
    assert h.run.waiting_for(h.now) is None
    h.until(lambda: h.run.phase is Phase.TRIAL, max_s=1.0)


def test_a_deaf_recorder_holds_the_trial_back_and_says_so():
    h = Harness()
    h.io.listening = False
    h.tick()
    h.reset_done()
    h.tick(100)
    assert h.run.phase is Phase.READY and not h.io.markers
    assert "trajectory recorder" in h.run.waiting_for(h.now)
    h.io.listening = True
    h.tick()
    assert h.run.phase is Phase.TRIAL


def test_a_lost_episode_is_run_again_after_the_timeout():
    h = harness_at_update()
    h.deliver_iteration(0, n=1)  # the recorder could not align the second trial
    h.tick(int(0.5 / TICK_S))
    assert h.run.phase is Phase.UPDATING, "not before episode_timeout_s"
    h.until(lambda: h.run.phase is Phase.TRIAL, max_s=1.0)
    assert h.run.counts["lost_trials"] == 1 and "not delivered" in h.io.reports[-1]
    assert h.io.markers[-1].trial == 3 and h.io.markers[-1].iteration == 0
    h.until(lambda: h.run.phase is not Phase.TRIAL)
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.UPDATING)
    for e in h.episodes_of(0, 1, seed=1):
        h.run.on_episodes(e)
    assert h.run.take_update() is not None


def test_the_last_trial_hands_over_where_it_ended_and_waits_for_a_recent_model():
    h = Harness(iterations=1)
    h.run_trials(2)
    assert h.run.phase is Phase.HOLDING, "no reset after the last trial"
    q_end = h.states[-1][:NQ]  # the state of the tick that ended the trial
    h.x = np.concatenate([q_end + 0.01, np.zeros(NQ)])
    u, from_plan = h.tick()
    omega = h.settings.init_pd_omega_rad_s
    assert np.allclose(u, INERTIA * omega**2 * -0.01) and not from_plan, "the PD holds the pose the last trial ended at"
    h.deliver_iteration(0)
    report = h.run.run_update(h.run.take_update())
    assert report.switch_to_mode == "ilqr"
    h.run.apply_settings(h.settings.replace(mode="ilqr"), h.now)
    assert h.run.phase is Phase.HOLDING
    assert h.run.plan_request(h.now, h.x) is None, "no ensemble yet"
    assert "learned model" in h.run.waiting_for(h.now)
    h.run.on_ensemble(model_version=3, iteration=-2)
    assert h.run.plan_request(h.now, h.x) is None and "trained on iteration -1" in h.run.waiting_for(h.now)
    h.run.on_ensemble(model_version=4, iteration=-1)  # one iteration behind the last trials (lag 1)
    request = h.run.plan_request(h.now, h.x)
    assert request is not None and np.allclose(request.goal, GOAL)
    assert h.run.on_plan(plan(h.now), request, h.now) == "accepted" and h.run.phase is Phase.PLANNING
    u, from_plan = h.tick()
    assert from_plan and np.allclose(u, 1.0)


def test_a_lost_episode_during_the_hand_over_sends_the_arm_back_for_another_trial():
    h = Harness(iterations=1)
    h.run_trials(2)
    assert h.run.phase is Phase.HOLDING
    h.deliver_iteration(0, n=1)
    h.until(lambda: h.run.phase is Phase.RETURNING, max_s=2.0)
    assert h.run.counts["lost_trials"] == 1
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.TRIAL)
    h.until(lambda: h.run.phase is not Phase.TRIAL)
    assert h.run.phase is Phase.HOLDING


def test_a_failed_update_is_reported_and_repeats_the_iteration():
    h = harness_at_update()
    episodes = h.episodes_of(0, 2)
    for e in episodes:
        h.run.on_episodes(e)
    short = Episodes.concatenate([e.select([0]) for e in episodes])
    short = Episodes(short.x[:, :4], short.u[:, :3], short.timestamps_s[:, :4], short.goal, short.metadata)
    h.run.on_local_model(0, fit_tvlg(short), model_version=1)  # a model of 3 steps for trials of 5
    report = h.run.run_update(h.run.take_update())
    assert report.error and "repeating the iteration" in h.io.reports[-1]
    assert h.run.iteration == 0 and h.run.phase is Phase.RETURNING and h.run.counts["failed_updates"] == 1
    h.run_trials(1)
    assert h.io.markers[-1].iteration == 0


def test_a_stale_state_aborts_the_trial_with_a_marker_and_stops_the_torque():
    h = Harness()
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.TRIAL)
    h.tick(5)
    h.fresh = False
    u, from_plan = h.tick()
    assert np.all(u == 0.0) and not from_plan
    assert h.io.markers[-1].event == "abort" and h.run.phase is Phase.RETURNING
    assert h.run.counts["stale_state_stops"] == 1 and h.run.counts["aborted_trials"] == 1


def harness_at_update() -> Harness:
    """An iteration's two trials run, the arm reset: the run waits for their episodes to update."""
    h = Harness()
    h.run_trials(2)
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.UPDATING)
    return h


def planning_harness(**settings) -> Harness:
    h = Harness(mode="ilqr", model_source="physics", **settings)
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.HOLDING)
    return h


def test_planning_from_the_start_accepts_fresh_plans_and_refuses_stale_and_obsolete_ones():
    h = planning_harness()
    u, from_plan = h.tick()
    assert not from_plan and np.allclose(u, 0.0, atol=1e-9), "a PD hold at the start, where the arm rests"
    request = h.run.plan_request(h.now, h.x)
    late = plan(h.now - 0.3)
    late.U[:] = 0.1 * np.arange(late.T)[:, None]  # a torque per knot
    assert h.run.on_plan(late, request, h.now) == "accepted", "the hold kept the arm where the plan starts"
    u, from_plan = h.tick()
    assert from_plan and np.allclose(u, 0.0), "it starts at its first knot when it arrives, not at the sixth"
    assert h.run.on_plan(plan(h.now - 0.06), request, h.now) == "stale", "its first 50 ms knot already past"
    assert h.run.on_plan(plan(h.now - 0.04), request, h.now) == "accepted", "within its first knot"
    assert h.run.on_plan(plan(h.now), request, h.now) == "accepted"
    h.run.request_return(h.now)
    assert h.run.on_plan(plan(h.now), request, h.now) == "obsolete", "made before the reset"
    assert h.run.counts["stale_plans"] == 1 and h.run.counts["obsolete_plans"] == 1


def test_a_plan_for_a_predicted_state_takes_over_at_its_start_time():
    h = planning_harness()
    request = h.run.plan_request(h.now, h.x)
    h.run.on_plan(plan(h.now, u=1e-4), request, h.now)  # small torques: the arm stays near both nominals
    start = h.now + 0.1
    assert h.run.on_plan(plan(start, u=2e-4, x_hat=h.x), h.run.plan_request(h.now, h.x), h.now) == "accepted"
    h.until(lambda: h.now >= start - TICK_S / 2)
    assert np.allclose(h.torques[-2][0], 1e-4), "the executing plan runs until the new one starts"
    h.tick()
    assert np.allclose(h.torques[-1][0], 2e-4)


def test_an_expired_plan_hands_the_arm_to_a_pd_hold_where_it_is():
    h = planning_harness()
    h.run.on_plan(plan(h.now, T=5, u=0.5 * INERTIA), h.run.plan_request(h.now, h.x), h.now)  # 0.5 rad/s²
    h.tick(int(0.2 / TICK_S))
    in_flight = h.run.plan_request(h.now, h.x)
    h.tick(int(0.05 / TICK_S) + 2)
    assert h.run.phase is Phase.HOLDING and h.run.counts["expired_plans"] == 1
    q_held = h.x[:NQ].copy()
    h.tick(int(2.0 / TICK_S))
    assert np.max(np.abs(h.x[:NQ] - q_held)) < 0.02 and np.max(np.abs(h.x[NQ:])) < 0.01, "at rest near where it expired"
    assert h.run.on_plan(plan(in_flight.t0_s + 2.0), in_flight, h.now) == "obsolete", \
        "planned from where the expired plan would have taken the arm, not from the hold"
    assert h.run.on_plan(plan(h.now), h.run.plan_request(h.now, h.x), h.now) == "accepted"


def test_a_lost_state_drops_the_plan_and_holds_where_the_arm_is_when_states_return():
    h = planning_harness()
    request = h.run.plan_request(h.now, h.x)
    h.run.on_plan(plan(h.now), request, h.now)
    h.fresh = False
    assert np.all(h.tick()[0] == 0.0)
    assert h.run.plan_request(h.now, None) is None
    assert h.run.on_plan(plan(h.now), request, h.now) == "obsolete", "never a plan from before the gap"
    h.fresh = True
    h.x[:NQ] += 0.05
    q_back = h.x[:NQ].copy()
    u, from_plan = h.tick()
    assert not from_plan and h.run.phase is Phase.HOLDING
    h.tick(int(1.0 / TICK_S))
    assert np.max(np.abs(h.x[:NQ] - q_back)) < 0.01


def test_mode_changes_move_the_phase():
    h = planning_harness()
    h.run.on_plan(plan(h.now), h.run.plan_request(h.now, h.x), h.now)
    h.run.apply_settings(h.run.settings.replace(mode="mppi"), h.now)
    assert h.run.phase is Phase.PLANNING, "another planner takes over at its first plan"
    h.run.apply_settings(h.run.settings.replace(mode="lqr_flm"), h.now)
    assert h.run.phase is Phase.RETURNING, "trials start at the start configuration"
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.TRIAL)
    h.run.apply_settings(h.run.settings.replace(mode="ilqr"), h.now)
    assert h.io.markers[-1].event == "abort" and h.run.phase is Phase.RETURNING
    h.tick()
    h.reset_done()
    h.until(lambda: h.run.phase is Phase.HOLDING)


def test_torques_are_clipped_to_the_limits_and_never_non_finite():
    h = planning_harness()
    request = h.run.plan_request(h.now, h.x)
    h.run.on_plan(plan(h.now, u=500.0), request, h.now)
    u, _ = h.tick()
    assert np.array_equal(u, LIMIT) and h.run.counts["clipped_ticks"] == 1
    h.x[:] = START_X  # back on the nominal: only the plan's torques are at fault below
    h.run.on_plan(plan(h.now, u=np.nan), h.run.plan_request(h.now, h.x), h.now)
    u, from_plan = h.tick()
    assert np.all(u == 0.0) and not from_plan


def test_plans_that_start_later_queue_by_start_and_a_plan_supersedes_those_starting_after_it():
    h = planning_harness()
    request = h.run.plan_request(h.now, h.x)
    assert h.run.on_plan(plan(h.now, u=1e-4), request, h.now) == "accepted"
    b, c = plan(h.now + 0.1, u=2e-4, x_hat=h.x), plan(h.now + 0.2, u=3e-4, x_hat=h.x)
    assert h.run.on_plan(b, request, h.now) == "accepted" and h.run.on_plan(c, request, h.now) == "accepted"
    assert h.run.plan_request(h.now, h.x).policies[1:] == (b, c), "the next plan is predicted under all of them"
    torques = [h.tick()[0][0] for _ in range(60)]  # 0.24 s of 4 ms ticks
    assert torques[0] == 1e-4 and 2e-4 in torques and torques[-1] == 3e-4, "B ran from its start, then C"
    d = plan(h.now + 0.05, u=4.0)
    e = plan(h.now + 0.10, u=5.0)
    assert h.run.on_plan(e, request, h.now) == "accepted" and h.run.on_plan(d, request, h.now) == "accepted"
    assert h.run.plan_request(h.now, h.x).policies[1:] == (d,), "D starts before E: E was planned without it"


def test_a_plan_predicted_under_a_plan_that_expired_meanwhile_is_not_started_from_the_hold():
    h = planning_harness()
    assert h.run.on_plan(plan(h.now), h.run.plan_request(h.now, h.x), h.now) == "accepted"
    request = h.run.plan_request(h.now, h.x)
    assert request.policies, "planned from the state predicted under the plan in force"
    h.until(lambda: h.run.phase is Phase.HOLDING)  # the plan runs out: a PD hold where the arm is
    assert h.run.on_plan(plan(h.now + 0.1), request, h.now) == "obsolete"
    h.tick(int(2.0 / TICK_S))  # at rest under the hold
    assert h.run.on_plan(plan(h.now), h.run.plan_request(h.now, h.x), h.now) == "accepted"


def test_a_pending_plan_far_from_the_arm_when_it_would_start_is_dropped():
    h = planning_harness()
    assert h.run.on_plan(plan(h.now, u=1e-4), h.run.plan_request(h.now, h.x), h.now) == "accepted"
    far = plan(h.now + 0.02, u=2e-4, x_hat=START_X + 1.0)  # 1 rad from the arm
    assert h.run.on_plan(far, h.run.plan_request(h.now, h.x), h.now) == "accepted"
    torques = [h.tick()[0][0] for _ in range(10)]
    assert torques == [1e-4] * 10 and h.run.counts["mismatched_plans"] == 1, "the plan in force runs on"


def test_a_hold_asks_for_a_plan_only_once_the_arm_is_at_rest():
    h = planning_harness()
    moving = h.x.copy()
    moving[NQ] = 0.5
    assert h.run.plan_request(h.now, moving) is None
    assert h.run.plan_request(h.now, h.x) is not None


def test_a_plan_the_arm_has_left_is_abandoned_for_a_hold_where_the_arm_is():
    h = planning_harness()
    assert h.run.on_plan(plan(h.now, u=1e-4), h.run.plan_request(h.now, h.x), h.now) == "accepted"
    assert h.tick()[1], "the arm follows the plan"
    h.x[NQ + 6] += 1.0  # knocked: 1 rad/s off the plan's nominal
    u, from_plan = h.tick()
    assert not from_plan and h.run.phase is Phase.HOLDING and h.run.counts["abandoned_plans"] == 1
