"""The safety supervisor, one rule at a time, plus a property test over arbitrary inputs."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from pupper_ros.backends.io import JointCommand, SensorSample
from pupper_ros.safety import SafetyLimits, SafetySupervisor, State

DT = 0.02
LEVEL = np.array([0.0, 0.0, 0.0, 1.0])


def sample(profile, q=None, stamp=0.0, orientation=LEVEL, velocity=None):
    q = profile.default_pose.copy() if q is None else np.asarray(q, dtype=float)
    return SensorSample(stamp, q, np.zeros(12) if velocity is None else velocity, np.asarray(orientation, float), np.zeros(3))


def make(profile, **limits):
    limits = SafetyLimits(control_period=DT, **limits)
    return SafetySupervisor(profile, limits, profile.command_low, profile.command_high)


def walk_to(sup, profile, t=0.0, target=None):
    """Activate and run through soft start and fade-in; returns the time reached."""
    target = profile.default_pose if target is None else target
    assert sup.activate(sample(profile, stamp=t))
    out = JointCommand(12)
    while sup.state != State.WALKING:
        t += DT
        sup.step(sample(profile, stamp=t), t, target, out)
    return t


def test_inactive_and_damping_send_zero_kp(profile):
    sup = make(profile)
    out = sup.step(sample(profile), 0.0, None, JointCommand(12))
    assert sup.state == State.INACTIVE
    assert np.all(out.kp == 0) and np.all(out.kd == sup.limits.damping_kd)


def test_soft_start_interpolates_from_the_measured_pose(profile):
    sup = make(profile, soft_start_duration=1.0, max_joint_speed=30.0)
    crouched = profile.default_pose * 0.5
    sup.activate(sample(profile, crouched))
    out = JointCommand(12)
    for k in range(1, 26):  # half way through the soft start
        sup.step(sample(profile, crouched, stamp=k * DT), k * DT, None, out)
    np.testing.assert_allclose(out.position, 0.5 * crouched + 0.5 * profile.default_pose, atol=1e-9)
    assert sup.state == State.STANDING_UP
    assert not sup.needs_policy


def test_fade_in_blends_the_policy_in_then_walks(profile):
    sup = make(profile, soft_start_duration=0.2, fade_in_duration=1.0)
    policy_target = profile.default_pose + 0.1
    sup.activate(sample(profile))
    out = JointCommand(12)
    t = 0.0
    while sup._phase_time + 1e-9 < 0.2 + 0.5:
        t += DT
        sup.step(sample(profile, stamp=t), t, policy_target, out)
    np.testing.assert_allclose(out.position, profile.default_pose + 0.05, atol=1e-6)
    assert sup.state == State.STANDING_UP
    for _ in range(30):
        t += DT
        sup.step(sample(profile, stamp=t), t, policy_target, out)
    assert sup.state == State.WALKING
    np.testing.assert_allclose(out.position, policy_target, atol=1e-9)
    assert np.all(out.kp == profile.kp) and np.all(out.kd == profile.kd)


def test_commands_are_clamped_to_the_trained_ranges(profile):
    sup = make(profile)
    assert sup.set_command([5.0, -5.0, 9.0], 0.0)
    np.testing.assert_allclose(sup.update_command(0.0), [profile.command_high[0], profile.command_low[1], profile.command_high[2]])


@pytest.mark.parametrize("bad", [[math.nan, 0, 0], [0, math.inf, 0], [0, 0, -math.inf], [1, 2]])
def test_non_finite_or_malformed_commands_are_rejected_and_counted(profile, bad):
    sup = make(profile)
    sup.set_command([0.2, 0, 0], 0.0)
    assert not sup.set_command(bad, 0.01)
    assert sup.commands_rejected == 1
    np.testing.assert_allclose(sup.update_command(0.01), [0.2, 0, 0])


def test_stale_command_ramps_to_zero(profile):
    sup = make(profile, command_timeout=0.5, command_ramp_time=0.5)
    sup.set_command([0.6, 0.0, 1.0], 0.0)
    assert sup.update_command(0.4)[0] == pytest.approx(0.6)
    values = [sup.update_command(0.5 + k * DT).copy() for k in range(1, 40)]
    assert values[0][0] < 0.6  # ramping down, not cut
    assert all(b[0] <= a[0] for a, b in zip(values, values[1:]))
    np.testing.assert_allclose(values[-1], 0.0)


def test_targets_are_clamped_inside_limits_with_margin(profile):
    sup = make(profile, joint_limit_margin=0.1, max_joint_speed=30.0)
    t = walk_to(sup, profile)
    out = JointCommand(12)
    for _ in range(50):
        t += DT
        sup.step(sample(profile, stamp=t), t, np.full(12, 100.0), out)
    np.testing.assert_allclose(out.position, profile.upper_limits - 0.1)


def test_target_change_per_tick_is_limited_by_max_joint_speed(profile):
    sup = make(profile, max_joint_speed=5.0)
    t = walk_to(sup, profile)
    out = JointCommand(12)
    before = profile.default_pose.copy()
    t += DT
    sup.step(sample(profile, stamp=t), t, profile.default_pose + 1.0, out)
    np.testing.assert_allclose(out.position - before, np.minimum(1.0, 5.0 * DT), atol=1e-9)


def test_gains_never_exceed_the_robot_maxima(profile):
    sup = make(profile, stand_kp=profile.kp_max, stand_kd=profile.kd_max)
    sup.activate(sample(profile))
    out = sup.step(sample(profile, stamp=DT), DT, None, JointCommand(12))
    assert np.all(out.kp <= profile.kp_max) and np.all(out.kd <= profile.kd_max)


@pytest.mark.parametrize(
    "fault, reason",
    [
        (lambda sup, p, t: sup.step(sample(p, stamp=t - 0.5), t, p.default_pose, JointCommand(12)), "ms old"),
        (lambda sup, p, t: sup.step(sample(p, q=np.full(12, np.nan), stamp=t), t, p.default_pose, JointCommand(12)), "non-finite sensor"),
        (lambda sup, p, t: sup.step(sample(p, q=p.upper_limits + 0.6, stamp=t), t, p.default_pose, JointCommand(12)), "encoder fault"),
        (lambda sup, p, t: sup.step(sample(p, stamp=t), t, np.full(12, np.nan), JointCommand(12)), "policy output is not finite"),
        (lambda sup, p, t: sup.step(sample(p, stamp=t, orientation=[math.sin(0.5), 0, 0, math.cos(0.5)]), t, p.default_pose, JointCommand(12)), "tilt"),
        (lambda sup, p, t: [sup.note_overrun(1) for _ in range(5)], "overran 5 ticks"),
        (lambda sup, p, t: sup.emergency_stop(), "emergency stop"),
        (lambda sup, p, t: sup.fault("backend error: port gone"), "backend error"),
    ],
    ids=["stale sensors", "non-finite sensors", "joint reading beyond its range", "non-finite policy", "tilt", "overruns", "e-stop", "backend error"],
)
def test_each_fault_latches_damping_until_cleared(profile, fault, reason):
    sup = make(profile)
    t = walk_to(sup, profile) + DT
    fault(sup, profile, t)
    assert sup.state == State.DAMPING and reason in sup.fault_reason
    out = JointCommand(12)
    for k in range(5):  # latched: healthy input does not bring it back
        sup.step(sample(profile, stamp=t + k * DT), t + k * DT, profile.default_pose, out)
    assert sup.state == State.DAMPING and np.all(out.kp == 0.0)
    ok, message = sup.clear_fault(sample(profile, stamp=t), t)
    assert ok and reason.split()[0] in message
    assert sup.state == State.STANDING_UP


def test_clear_fault_refused_while_sensors_are_unhealthy(profile):
    sup = make(profile)
    sup.emergency_stop()
    ok, message = sup.clear_fault(sample(profile, q=np.full(12, np.inf)), 0.0)
    assert not ok and "non-finite" in message and sup.state == State.DAMPING
    fallen = sample(profile, orientation=[1.0, 0, 0, 0])  # upside down
    ok, message = sup.clear_fault(fallen, 0.0)
    assert not ok and "tilt" in message


@pytest.mark.parametrize("reading", [1.37e11, 0.6], ids=["absurd", "0.6 rad past"])
def test_no_stand_up_starts_from_a_joint_reading_beyond_anything_the_joint_reaches(profile, reading):
    """Found by the property test in CI: a clear with a knee reading 1.37e11 rad stood the robot up from there, a
    first target that would ask the motor for full torque. Past the limit by more than joint_reading_tolerance
    (0.5 rad) a reading is an encoder fault; 0.1 rad past (a v3 knee on its stop) still stands up."""
    knee = profile.joints.index("leg_front_r_3")
    q = profile.default_pose.copy()
    q[knee] = profile.upper_limits[knee] + reading
    sup = make(profile)
    assert not sup.activate(sample(profile, q))
    assert sup.state == State.DAMPING and "leg_front_r_3" in sup.fault_reason and "encoder fault" in sup.fault_reason
    ok, message = sup.clear_fault(sample(profile, q), 0.0)
    assert not ok and "encoder fault" in message and sup.state == State.DAMPING
    q[knee] = profile.upper_limits[knee] + 0.1
    ok, _ = sup.clear_fault(sample(profile, q), 0.0)
    assert ok and sup.state == State.STANDING_UP


def test_an_emergency_stop_while_inactive_holds_through_activate(profile):
    """Finding 2 of the fail-closed review: an e-stop before activation used to be cleared by activate."""
    sup = make(profile)
    sup.emergency_stop()
    assert not sup.activate(sample(profile))
    out = sup.step(sample(profile), 0.0, None, JointCommand(12))
    assert sup.state == State.DAMPING and sup.fault_reason == "emergency stop" and np.all(out.kp == 0.0)


@pytest.mark.parametrize("cause", ["emergency stop", "backend error: port gone"])
def test_a_latched_fault_survives_deactivate_and_activate(profile, cause):
    """Finding 2: fault, deactivate, activate used to stand the robot up again; only clear_fault releases it."""
    sup = make(profile)
    t = walk_to(sup, profile) + DT
    sup.fault(cause)
    sup.deactivate("deactivated")
    assert sup.fault_reason == cause  # the orderly stop does not overwrite why the robot is damped
    assert not sup.activate(sample(profile, stamp=t))
    out = sup.step(sample(profile, stamp=t), t, profile.default_pose, out=JointCommand(12))
    assert sup.state == State.DAMPING and np.all(out.kp == 0.0)
    ok, _ = sup.clear_fault(sample(profile, stamp=t), t)
    assert ok and sup.state == State.STANDING_UP and not sup.latched_fault


def test_an_orderly_deactivate_is_not_a_latch(profile):
    sup = make(profile)
    t = walk_to(sup, profile) + DT
    sup.deactivate("deactivated")
    assert sup.state == State.DAMPING and not sup.latched_fault
    assert sup.activate(sample(profile, stamp=t)) and sup.state == State.STANDING_UP


def test_stand_up_from_past_a_joint_limit_starts_at_the_measured_pose_and_never_jumps(profile):
    """Finding 7: a knee resting 0.10 rad past its (inset) limit, as a Pupper v3's knees rest on their stops after
    homing. The first target used to be the pose clipped into the limits (0.15 rad away at kp 5); now every target
    follows the soft start from the measured pose, moving inward only."""
    sup = make(profile, soft_start_duration=1.0)
    knee = profile.joints.index("leg_front_r_3")
    rest = profile.default_pose.copy()
    rest[knee] = profile.upper_limits[knee] + 0.10
    assert sup.activate(sample(profile, rest))
    soft_start_step = np.abs(profile.default_pose - rest) * DT / sup.limits.soft_start_duration
    previous, out = rest.copy(), JointCommand(12)
    for k in range(1, int(1.0 / DT) + 1):
        sup.step(sample(profile, rest, stamp=k * DT), k * DT, profile.default_pose, out)
        moved = out.position - previous
        assert np.all(np.abs(moved) <= soft_start_step + 1e-9), (k, moved[knee], soft_start_step[knee])
        assert moved[knee] <= 1e-12  # only inward
        previous = out.position.copy()
    np.testing.assert_allclose(out.position, profile.default_pose, atol=1e-9)


def test_the_default_joint_speed_limit_is_where_one_ticks_step_asks_for_the_torque_limit(profile):
    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.safety import joint_speed_limit

    v2 = load_robot_profile("pupper_v2")
    assert joint_speed_limit(profile, DT) == pytest.approx(profile.torque_limit / (profile.kp * DT))  # 30 rad/s
    assert joint_speed_limit(v2, DT) == v2.velocity_limit  # 21 rad/s from the torque, capped at 20
    assert joint_speed_limit(profile, DT / 10) == profile.velocity_limit  # a faster loop: the velocity limit caps
    assert joint_speed_limit(profile, DT, 7.0) == 7.0


def test_overruns_must_be_consecutive(profile):
    sup = make(profile, max_consecutive_overruns=3)
    walk_to(sup, profile)
    for missed in (1, 1, 0, 1, 1, 0):
        sup.note_overrun(missed)
    assert sup.state == State.WALKING


@pytest.mark.parametrize(
    "limits, message",
    [
        ({"control_period": 0.0}, "control_period must be positive"),
        ({"joint_limit_margin": 2.0}, "limits inverted"),
        ({"joint_reading_tolerance": 0.0}, "joint_reading_tolerance must be positive"),
        ({"damping_kd": 5.0}, "damping_kd must be in"),
        ({"max_joint_speed": 1000.0}, "max_joint_speed must be in"),
        ({"tilt_limit": 3.0}, "tilt_limit must be in"),
    ],
)
def test_bad_limits_are_refused_by_name(profile, limits, message):
    values = {"control_period": DT} | limits
    with pytest.raises(ValueError, match=message):
        SafetySupervisor(profile, SafetyLimits(**values), profile.command_low, profile.command_high)


# --- property: whatever comes in, what goes out stays inside the envelope ---------------------------------------
finite_or_not = st.one_of(
    st.floats(-4.0, 4.0), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.floats(-1e12, 1e12),
)
healthy12 = st.lists(st.floats(-3.0, 3.0), min_size=12, max_size=12)
wild12 = st.lists(finite_or_not, min_size=12, max_size=12)
vector12 = st.one_of(healthy12, healthy12, healthy12, wild12)  # mostly usable, so runs reach the active states
event = st.tuples(
    st.sampled_from(["tick", "tick", "tick", "tick", "command", "estop", "clear", "overrun", "activate"]),
    vector12,  # joint positions
    vector12,  # policy output (its first three also serve as a velocity command)
    st.one_of(st.just([0.0, 0.0, 0.0, 1.0]), st.just([0.0, 0.0, 0.0, 1.0]), st.lists(finite_or_not, min_size=4, max_size=4)),
    st.one_of(st.just(0.0), st.just(0.0), st.floats(0.0, 0.3)),  # sensor age
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, min_size=1, max_size=40))
def test_every_command_stays_inside_the_envelope(profile, events):
    """1000 random event sequences (sensor readings, commands and policy outputs with NaN, infinities and huge
    values; e-stops, clears, overruns, activations). Inputs are biased toward usable values so that about a fifth
    of the sequences reach STANDING_UP or WALKING (see --hypothesis-show-statistics); the rest exercise DAMPING."""
    sup = make(profile, max_joint_speed=10.0)
    lower = profile.lower_limits + sup.limits.joint_limit_margin
    upper = profile.upper_limits - sup.limits.joint_limit_margin
    max_step = 10.0 * DT
    t, previous = 0.0, None
    out = JointCommand(12)
    active_ticks = 0
    for kind, joints, policy, orientation, age in events:
        t += DT
        q = np.array(joints)
        quat = np.array(orientation)
        norm = np.linalg.norm(quat) if np.all(np.isfinite(quat)) else 0.0
        if np.isfinite(norm) and 0.5 < norm < 1e6:
            quat = quat / norm
        reading = SensorSample(t - age, q, np.zeros(12), quat, np.zeros(3))
        if kind == "command":
            sup.set_command(policy[:3], t)
            continue
        if kind == "estop":
            sup.emergency_stop()
        elif kind == "clear":
            sup.clear_fault(reading, t)
        elif kind == "overrun":
            sup.note_overrun(1)
        elif kind == "activate":
            sup.activate(reading)
        if kind in ("clear", "activate") and sup.state == State.STANDING_UP and previous is None:
            previous = q.copy()  # a stand-up starts from the measured pose: its first target is one step from it
        sup.update_command(t)
        was_active = sup.state in (State.STANDING_UP, State.WALKING)
        policy_used = sup.needs_policy
        faulty = bool(sup.sensor_problem(reading, t)) or (policy_used and not np.all(np.isfinite(policy)))
        sup.step(reading, t, np.array(policy), out)
        assert np.all(np.isfinite(out.position)) and np.all(np.isfinite(out.kp)) and np.all(np.isfinite(out.kd))
        # inside the limits, or (a stand-up from a joint past its limit) no further out than the previous target
        low, high = (lower, upper) if previous is None else (np.minimum(lower, previous), np.maximum(upper, previous))
        assert np.all(out.position >= low - 1e-9) and np.all(out.position <= high + 1e-9)
        assert np.all((0 <= out.kp) & (out.kp <= profile.kp_max)) and np.all((0 <= out.kd) & (out.kd <= profile.kd_max))
        assert np.all(np.isfinite(sup.command)) and np.all(sup.command >= profile.command_low) and np.all(sup.command <= profile.command_high)
        if was_active and faulty:
            assert sup.state == State.DAMPING  # a fault ends in DAMPING, the same tick
        if sup.state == State.DAMPING:
            assert np.all(out.kp == 0.0)
        if previous is not None and np.all(out.kp > 0):
            assert np.all(np.abs(out.position - previous) <= max_step + 1e-9)
        previous = out.position.copy() if np.all(out.kp > 0) else None
        active_ticks += sup.state != State.DAMPING and sup.state != State.INACTIVE
    event_note = "reached STANDING_UP or WALKING" if active_ticks else "never active"
    note(event_note)
    hypothesis_event(event_note)


def test_an_error_inside_the_control_step_fails_closed(profile, tmp_path):
    """A policy that raises (here: onnxruntime handed a broken session) must leave the robot in DAMPING with a
    damping command written, not a dead control thread."""
    from pupper_ros.backends.sim_backend import SimBackend
    from pupper_ros.controller import Controller
    from pupper_ros.policy import load_policy
    from tests.policies import standing_network, write_policy

    policy = load_policy(write_policy(tmp_path / "p.onnx", profile, standing_network()), profile)
    supervisor = make(profile)
    backend = SimBackend(profile, DT, realtime=False)
    backend.open()
    controller = Controller(profile, policy, supervisor, backend, 1)
    controller.activate(0.0)
    t = 0.0
    while supervisor.state != State.WALKING:
        t += DT
        controller.tick(t)
    policy._binding.clear_binding_inputs()  # onnxruntime raises on the next inference: no input bound
    command = controller.tick(t + DT)
    assert supervisor.state == State.DAMPING and "control step failed" in supervisor.fault_reason
    assert np.all(command.kp == 0.0)
    backend.close()


def test_activation_waits_for_a_just_opened_links_first_reading(profile, tmp_path):
    """A serial link's first status frame arrives some ms after the port opens; activation waits for it (up to a
    timeout) instead of latching DAMPING on 'no sensor sample yet'. The backend here is a test double whose first
    reading arrives 0.2 s after opening, as a real link's would, and a second that never delivers one."""
    import threading
    import time

    from pupper_ros.backends.backend import Backend
    from pupper_ros.controller import Controller
    from pupper_ros.policy import load_policy
    from tests.policies import standing_network, write_policy

    class LateFirstReadingBackend(Backend):
        def __init__(self, delay):
            self.sample = None
            if delay is not None:
                threading.Timer(delay, self._arrive).start()

        def _arrive(self):
            n = profile.num_joints
            self.sample = SensorSample(time.monotonic(), profile.default_pose.copy(), np.zeros(n), np.array([0, 0, 0, 1.0]), np.zeros(3))

        def open(self):
            pass

        def latest_sample(self, now):
            if self.sample is not None:
                self.sample.stamp = now
            return self.sample

        def write(self, command, now):
            pass

        def close(self):
            pass

    policy = load_policy(write_policy(tmp_path / "p.onnx", profile, standing_network()), profile)
    late = Controller(profile, policy, make(profile), LateFirstReadingBackend(0.2), 1)
    assert late.wait_for_sensors(time.monotonic, 10.0)  # returns as soon as the reading arrives (0.2 s)
    assert late.activate(time.monotonic()) and late.state == State.STANDING_UP

    silent = Controller(profile, policy, make(profile), LateFirstReadingBackend(None), 1)
    started = time.monotonic()
    assert not silent.wait_for_sensors(time.monotonic, 0.3)
    assert time.monotonic() - started >= 0.3
    assert not silent.activate(time.monotonic()) and silent.state == State.DAMPING


def test_a_newly_selected_policy_fades_in_from_the_default_pose_without_a_jump(profile):
    """restart_fade_in (a policy switched while standing): STANDING_UP again, the new target blended in over
    fade_in_duration, every tick's step a fraction of the way, then WALKING on the new target alone."""
    sup = make(profile, fade_in_duration=0.5)
    t = walk_to(sup, profile)
    new_target = profile.default_pose + 0.1
    sup.restart_fade_in()
    assert sup.state == State.STANDING_UP and sup.needs_policy
    out, previous = JointCommand(12), profile.default_pose.copy()
    steps = 0
    while sup.state != State.WALKING:
        t += DT
        sup.step(sample(profile, stamp=t), t, new_target, out)
        assert np.all(np.abs(out.position - previous) <= 0.1 * DT / 0.5 + 1e-9)  # the blend's own pace
        previous = out.position.copy()
        steps += 1
    assert steps == round(0.5 / DT)
    np.testing.assert_allclose(out.position, new_target, atol=1e-9)


def test_a_policy_selected_during_the_soft_start_waits_for_it_to_end(profile):
    """Cutting the soft start short would pull the joints from the resting pose to the default pose at the joint
    speed limit: a switch during it changes nothing, and the new policy fades in after it as the first would have."""
    sup = make(profile, soft_start_duration=1.0)
    rest = profile.default_pose + 0.3
    assert sup.activate(sample(profile, rest))
    out, t = JointCommand(12), 0.0
    for _ in range(10):
        t += DT
        sup.step(sample(profile, rest, stamp=t), t, profile.default_pose, out)
    halfway = out.position.copy()
    sup.restart_fade_in()
    t += DT
    sup.step(sample(profile, rest, stamp=t), t, profile.default_pose, out)
    assert sup.state == State.STANDING_UP and not sup.needs_policy
    assert np.all(np.abs(out.position - halfway) <= 0.3 * DT / 1.0 + 1e-9)  # the soft start's own pace


def test_standing_means_no_command_in_force_and_none_received(profile):
    sup = make(profile)
    t = walk_to(sup, profile)
    assert sup.standing
    sup.set_command([0.2, 0.0, 0.0], t)
    assert not sup.standing
    sup.set_command([0.0, 0.0, 0.0], t)
    sup.update_command(t)
    assert sup.standing
