"""A simulated arm that differs from its URDF: each mismatch option changes the physics as specified."""

import numpy as np
import pinocchio as pin
import pytest

from mbrl_ros.dynamics.kinematics import load_arm_model
from mbrl_ros.sim.arm import SimSettings, SimulatedArm
from mbrl_ros.sim.mismatch import MISMATCH_PARAMETERS, PROFILES, MismatchSettings, mismatch_profile

Q = np.array([0.3, -0.5, 0.2, -2.0, 0.1, 1.6, 0.8])
Q0 = np.asarray(SimSettings().initial_positions_rad)
PAYLOAD = MismatchSettings(payload_mass_kg=1.5, payload_com_m=(0.02, 0.0, -0.04), payload_inertia_kgm2=(0.0025,) * 3)


def payload_gravity_pinocchio(settings: MismatchSettings, q: np.ndarray) -> np.ndarray:
    """g(q) of the URDF with the payload appended as a body on the end effector's joint, minus the URDF's."""
    arm = load_arm_model("panda")
    model = arm.model.copy()
    frame = model.frames[arm.ee_frame_id]
    placement = frame.placement * pin.SE3(np.eye(3), np.asarray(settings.payload_com_m))
    model.appendBodyToJoint(frame.parentJoint, pin.Inertia(settings.payload_mass_kg, np.zeros(3),
                                                           np.diag(settings.payload_inertia_kgm2)), placement)
    return (pin.computeGeneralizedGravity(model, model.createData(), q)
            - pin.computeGeneralizedGravity(arm.model, arm.model.createData(), q))


def test_payload_raises_the_gravity_torque_by_the_analytic_amount():
    extra = payload_gravity_pinocchio(PAYLOAD, Q)
    assert np.abs(extra).max() > 5.0, "1.5 kg at the Panda's hand is several N·m at the shoulder"
    with SimulatedArm(SimSettings(), PAYLOAD) as arm:
        np.testing.assert_allclose(arm.gravity_torque(Q, nominal=False) - arm.gravity_torque(Q), extra, atol=1e-9)
    with SimulatedArm(SimSettings()) as exact:
        np.testing.assert_allclose(arm_gravity := exact.gravity_torque(Q, nominal=False), exact.gravity_torque(Q))
        assert np.abs(arm_gravity).max() > 1.0


def test_payload_sags_under_nominal_compensation_and_its_analytic_torque_holds_it():
    """FCI compensates the URDF's gravity: a zero command lets the payload pull the arm down, the
    payload's gravity torque m g J^T on top (Pinocchio) holds it still, the dynamics' own answer."""
    extra = payload_gravity_pinocchio(PAYLOAD, Q)
    with SimulatedArm(SimSettings(initial_positions_rad=tuple(Q)), PAYLOAD) as arm:
        sag = arm.step(np.zeros(7), 300).position - Q
        arm.reset()
        held = arm.step(extra, 300).position - Q
    assert np.abs(sag).max() > 0.05
    assert np.abs(held).max() < 1e-4


def test_the_nominal_model_stays_the_urdf_with_a_payload():
    with SimulatedArm(SimSettings()) as exact, SimulatedArm(SimSettings(), PAYLOAD) as arm:
        np.testing.assert_allclose(arm.gravity_torque(Q), exact.gravity_torque(Q), atol=1e-12)
        np.testing.assert_allclose(arm.mass_matrix(Q), exact.mass_matrix(Q), atol=1e-12)


def kinetic_energy(arm: SimulatedArm, q, qd) -> float:
    return 0.5 * float(qd @ arm.mass_matrix(q) @ qd)


def coast(mismatch: MismatchSettings, steps: int = 500):
    """Push the gravity-compensated arm for 50 ms, then let it coast with a zero command: the
    kinetic energy at the start of the coast, after it, and the friction work ∫ qd^T B qd dt."""
    with SimulatedArm(SimSettings(), mismatch) as arm:
        push = np.array([20.0, -20.0, 10.0, 10.0, 2.0, 2.0, 1.0])
        state = arm.step(push, 50)
        e0 = kinetic_energy(arm, state.position, state.velocity)
        b = np.asarray(mismatch.viscous_friction_nms_per_rad or (0.0,) * 7)
        work = 0.0
        for _ in range(steps):
            work += float(state.velocity**2 @ b) * arm.dt_s
            state = arm.step(np.zeros(7))
        return e0, kinetic_energy(arm, state.position, state.velocity), work, state.velocity


def test_viscous_friction_dissipates_what_it_works():
    e0, e1, _, _ = coast(MismatchSettings())
    assert e0 > 0.5 and abs(e1 - e0) < 0.01 * e0, "the exact compensated arm keeps its kinetic energy"
    e0, e1, work, _ = coast(MismatchSettings(viscous_friction_nms_per_rad=(2.0,) * 7))
    assert e1 < 0.7 * e0
    assert (e0 - e1) == pytest.approx(work, rel=0.03)


def test_coulomb_friction_sticks_below_its_level_and_stops_a_coasting_arm():
    coulomb = (1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5)
    e0, e1, _, velocity = coast(MismatchSettings(coulomb_friction_nm=coulomb), steps=2000)
    assert e1 < 1e-6 * e0 and np.abs(velocity).max() < 1e-4
    tau = np.zeros(7)
    tau[3] = 0.8
    with SimulatedArm(SimSettings()) as exact:
        free = exact.step(tau, 200).position[3] - Q0[3]
    with SimulatedArm(SimSettings(), MismatchSettings(coulomb_friction_nm=coulomb)) as arm:
        # Bullet's iterative solver lets a stuck joint creep by a fraction of a per cent.
        assert abs(arm.step(tau, 200).position[3] - Q0[3]) < 0.01 * abs(free) and abs(free) > 0.01
        tau[3] = 1.5
        assert arm.step(tau, 200).velocity[3] > 0.05


def step_response(mismatch: MismatchSettings, steps: int = 40) -> np.ndarray:
    with SimulatedArm(SimSettings(), mismatch) as arm:
        tau = np.array([0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0])
        return np.array([arm.step(tau).position[3] for _ in range(steps)]) - arm.settings.initial_positions_rad[3]


def test_latency_delays_a_step_response_by_the_set_time():
    exact = step_response(MismatchSettings())
    late = step_response(MismatchSettings(command_latency_ms=7.0))
    assert exact[0] != 0.0
    assert np.abs(late[:7]).max() < 1e-12 < np.abs(exact[:7]).min()  # nothing moves for 7 ms (at rest: 1e-14 drift)
    np.testing.assert_allclose(late[7:], exact[:-7], rtol=0, atol=1e-12)


def test_reset_empties_the_command_fifo():
    with SimulatedArm(SimSettings(), MismatchSettings(command_latency_ms=10.0)) as arm:
        arm.step(np.full(7, 3.0), 5)
        arm.reset()
        assert np.abs(arm.step(np.zeros(7), 20).position - arm.settings.initial_positions_rad).max() < 1e-9


def test_torque_gain_scales_what_the_motors_apply():
    gain = (1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.2)
    with SimulatedArm(SimSettings(), MismatchSettings(torque_gain=gain)) as arm:
        tau = np.array([1.0, 2.0, 0.0, -1.0, 0.5, 0.0, 0.2])
        g = arm.gravity_torque()
        state = arm.step(tau)
    np.testing.assert_allclose(state.effort, np.asarray(gain) * (tau + g), atol=1e-9)


def test_noise_has_the_set_sigma_on_the_observed_state_only():
    mismatch = MismatchSettings(position_noise_rad=1e-3, velocity_noise_rad_s=2e-2)
    with SimulatedArm(SimSettings(), mismatch) as arm, SimulatedArm(SimSettings()) as exact:
        observed = np.array([arm.step(np.zeros(7)).x for _ in range(2000)])
        truth = np.array([exact.step(np.zeros(7)).x for _ in range(2000)])
        np.testing.assert_allclose(arm.ee_position(), exact.ee_position(), atol=1e-12)
        np.testing.assert_array_equal(arm.state().x, arm.state().x)  # one draw per physics step
    error = observed - truth  # the physics is the same: the noise is all of the difference
    std = error.std(axis=0)
    # 2000 samples: the sample σ is within 5 % of σ with a margin of over 3 standard errors
    np.testing.assert_allclose(std[:7], 1e-3, rtol=0.05)
    np.testing.assert_allclose(std[7:], 2e-2, rtol=0.05)
    assert np.abs(error.mean(axis=0) / std).max() < 0.1
    assert abs(np.corrcoef(error[1:, 0], error[:-1, 0])[0, 1]) < 0.1, "white, drawn afresh every step"


def test_noise_is_seeded_and_leaves_the_reset_sequence_alone():
    def resets(mismatch, seed):
        with SimulatedArm(SimSettings(seed=seed, reset_noise_rad=0.01), mismatch) as arm:
            return [arm._q.copy() for _ in range(3) if arm.reset() is not None], arm.step(np.zeros(7), 3).x

    noisy = MismatchSettings(position_noise_rad=1e-3)
    (q_a, x_a), (q_b, x_b) = resets(noisy, 3), resets(noisy, 3)
    q_exact, _ = resets(MismatchSettings(), 3)
    np.testing.assert_array_equal(x_a, x_b)
    np.testing.assert_array_equal(np.array(q_a), np.array(q_exact))
    assert not np.array_equal(resets(noisy, 4)[1], x_a)


def test_the_none_profile_is_the_exact_arm():
    """Bit for bit: every option off changes nothing, so the URDF model stays the perfect model."""
    def trajectory(*mismatch):
        with SimulatedArm(SimSettings(seed=1, reset_noise_rad=0.01), *mismatch) as arm:
            return np.array([arm.step(np.sin(np.arange(7) + 0.1 * i), 5).x for i in range(40)])

    np.testing.assert_array_equal(trajectory(mismatch_profile("none")), trajectory())
    assert not mismatch_profile("none").active and mismatch_profile("realistic").active


def test_realistic_profile_runs_and_differs():
    realistic = mismatch_profile("realistic")
    assert realistic.payload_mass_kg == 1.5 and realistic.command_latency_ms == 2.0
    with SimulatedArm(SimSettings(), realistic) as arm:
        state = arm.step(np.zeros(7), 500)
    assert np.all(np.isfinite(state.x))
    assert np.abs(state.position - np.asarray(arm.settings.initial_positions_rad)).max() > 0.01, "the payload sags"


@pytest.mark.parametrize("changes, words", [
    ({"payload_mass_kg": -1.0}, "payload_mass_kg"),
    ({"payload_com_m": (0.0, 0.1)}, "payload_com_m must be 3 values"),
    ({"payload_com_m": (0.0, 0.0, 2.0)}, "payload_com_m values must be in"),
    ({"payload_inertia_kgm2": (0.1, 0.0, 0.0)}, "no rigid body"),
    ({"viscous_friction_nms_per_rad": (-0.1,) * 7}, "viscous_friction_nms_per_rad"),
    ({"coulomb_friction_nm": (float("nan"),) * 7}, "coulomb_friction_nm"),
    ({"torque_gain": (2.0,) * 7}, "torque_gain values must be in [0.5, 1.5]"),
    ({"viscous_friction_nms_per_rad": (0.1,) * 7, "coulomb_friction_nm": (0.1,) * 6}, "one per joint"),
    ({"position_noise_rad": -1e-3}, "position_noise_rad"),
    ({"command_latency_ms": 500.0}, "command_latency_ms"),
    ({"mismatch": "bumpy"}, "mismatch must be one of"),
])
def test_bad_values_are_refused_with_a_reason(changes, words):
    with pytest.raises(ValueError, match=None) as err:
        MismatchSettings(**changes)
    assert words in str(err.value)


def test_the_arm_refuses_what_does_not_fit_it():
    with pytest.raises(ValueError, match="whole number of physics steps"):
        SimulatedArm(SimSettings(), MismatchSettings(command_latency_ms=2.5))
    with pytest.raises(ValueError, match="7 long"):
        SimulatedArm(SimSettings(), MismatchSettings(torque_gain=(1.0,) * 6))
    with pytest.raises(ValueError, match="mismatch must be one of"):
        mismatch_profile("bumpy")


def test_every_field_is_a_described_parameter():
    from dataclasses import fields

    assert {f.name for f in fields(MismatchSettings)} == set(MISMATCH_PARAMETERS)
    assert MISMATCH_PARAMETERS["mismatch"].choices == PROFILES
    for name in PROFILES:  # per-joint values filled in: each profile declares as typed ROS arrays
        assert mismatch_profile(name, 7).joints == 7
