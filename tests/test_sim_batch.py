"""Each engine's batched simulation is its single one, robot by robot: robot i of a batch and a single simulation,
started from the same state and driven through the same targets, gains and randomization, stay together; the
batch's arrays address each robot on its own (resets, pushes, friction, masses)."""

import numpy as np
import pytest

from pupper_ros.robot_profile import load_robot_profile
from pupper_ros.sim import EngineError, make_batch, make_simulation
from pupper_ros.sim.robot_batch import BatchError

ROBOTS = ("pupper_v3", "pupper_v2")
CONTROL_PERIOD = 0.02
# Both run the same compiled model through the same mj_step. They differ only in float rounding: the batch rotates
# velocities and the centre-of-mass moment with its own vectorized quaternion code (measured 2026-12-06: 2.1e-10 for
# Pupper v3, with the moment on, and 3.2e-13 for Pupper v2 over these 150 steps). The gait here moves joints by about
# 1 rad and the body by centimetres, so 1e-9 still separates any modelling difference. A PyBullet batch is single
# simulations, one world each: the same code, so the same numbers (0.0 measured).
AGREEMENT = 1e-9
CASES = [("mujoco", robot, False) for robot in ROBOTS] + [("mujoco", "pupper_v2", True), ("pybullet", "pupper_v3", False)]


def random_targets(profile, rng, steps):
    """A gait-like sequence: the default pose plus smooth noise of about 0.4 rad, inside the joint limits."""
    phase = np.linspace(0, 2 * np.pi * 2.5 * steps * CONTROL_PERIOD, steps)[:, None]
    offsets = 0.3 * np.sin(phase + rng.uniform(0, 2 * np.pi, profile.num_joints)) + 0.1 * rng.standard_normal((steps, profile.num_joints))
    return np.clip(profile.default_pose + offsets, profile.lower_limits, profile.upper_limits)


@pytest.mark.parametrize("engine, robot, implicit_pd", CASES)
def test_robot_i_of_a_batch_steps_as_a_single_simulation(engine, robot, implicit_pd):
    profile = load_robot_profile(robot)
    rng = np.random.default_rng(7)
    physics_dt = 0.004 if implicit_pd else None
    options = {"implicit_pd": True} if implicit_pd else {}
    single = make_simulation(profile, engine, physics_dt=physics_dt, **options)
    batch = make_batch(profile, engine, 4, threads=2, physics_dt=physics_dt, **options)
    i = 2
    substeps = round(CONTROL_PERIOD / single.physics_dt)
    # the same randomized robot on both sides
    kp, kd = profile.kp * rng.uniform(0.8, 1.2, 12), profile.kd * rng.uniform(0.8, 1.2, 12)
    strength = rng.uniform(0.8, 1.0, 12)
    shift = np.array([0.01, -0.005, 0.0])
    base_scale, link_scales = 1.1, rng.uniform(0.9, 1.1, 12)
    single.set_ground_friction(0.6)
    batch.set_ground_friction([i], [0.6])
    single.set_mass_scales(base_scale, link_scales)
    batch.set_mass_scales([i], [base_scale], link_scales[None])
    single.motor_strength, batch.motor_strength[i] = strength, strength
    single.base_com_shift, batch.base_com_shift[i] = shift, shift
    start = profile.default_pose + rng.uniform(-0.1, 0.1, 12)
    single.reset(joint_position=start, base_height=profile.standing_height + 0.02, base_yaw=0.3)
    batch.reset([i], joint_position=start, base_height=profile.standing_height + 0.02, base_yaw=0.3)
    worst = 0.0
    for k, targets in enumerate(random_targets(profile, rng, 150)):
        single.set_targets(targets, kp=kp, kd=kd)
        batch.targets[:], batch.kp[i], batch.kd[i] = targets, kp, kd
        if k == 60:  # a push, mid-walk
            single.push([0.3, -0.2, 0.0])
            batch.push([i], np.array([[0.3, -0.2, 0.0]]))
        single.step(substeps)
        batch.step(substeps)
        q, qd = batch.joint_states()
        position, orientation = batch.base_pose()
        linear, angular = batch.base_velocity()
        s_q, s_qd = single.joint_states()
        s_position, s_orientation = single.base_pose()
        s_linear, s_angular = single.base_velocity()
        pairs = [(q[i], s_q), (qd[i], s_qd), (position[i], s_position), (orientation[i], s_orientation),
                 (linear[i], s_linear), (angular[i], s_angular), (batch.torque[i], single.torque),
                 (batch.foot_positions()[i], single.foot_positions())]
        worst = max(worst, max(float(np.max(np.abs(a - b))) for a, b in pairs))
        assert worst <= AGREEMENT, f"step {k}: robot {i} of the batch and the single simulation differ by {worst:.3g}"
    print(f"{engine}, {robot}: largest difference over 150 control steps {worst:.3g}")
    assert np.ptp(single.joint_states()[0]) > 0.5  # it did move


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
def test_each_robot_is_addressed_on_its_own(profile, engine):
    batch = make_batch(profile, engine, 3, threads=1)
    batch.set_ground_friction([1], [0.3])
    assert list(batch.ground_friction()) == [1.0, 0.3, 1.0]
    batch.set_mass_scales([2], [1.5], np.ones((1, 12)))
    masses = batch.link_masses()
    assert masses[2, 0] == pytest.approx(1.5 * masses[0, 0]) and masses[1, 0] == masses[0, 0]
    batch.reset([0, 1, 2])
    batch.push([1], np.array([[0.5, 0.0, 0.0]]))
    linear, _ = batch.base_velocity()
    assert linear[1, 0] == pytest.approx(0.5) and linear[0, 0] == linear[2, 0] == 0.0
    batch.step(10)
    batch.reset([1], base_xy=np.array([[2.0, 0.0]]))
    position, _ = batch.base_pose()
    assert position[1, 0] == pytest.approx(2.0, abs=1e-6) and abs(position[0, 0]) < 0.05  # PyBullet: float32 poses
    feet, base = batch.contacts()
    assert feet.shape == (3, 4) and feet[[0, 2]].all() and not base.any()  # 0 and 2 stand on their feet
    assert not batch.take_diverged().any()
    if engine != "mujoco":
        return
    batch.qvel[0, :] = np.nan  # MuJoCo resets a simulation that diverges inside its step; the batch says which
    batch.step(1)
    assert list(batch.take_diverged()) == [True, False, False] and not batch.take_diverged().any()


@pytest.mark.parametrize("engine, each", [("mujoco", "250"), ("pybullet", "40,000")])
def test_a_batch_of_no_robots_or_more_than_memory_holds_is_refused(profile, engine, each):
    with pytest.raises(BatchError, match="at least one robot, got 0"):
        make_batch(profile, engine, 0)
    with pytest.raises(BatchError, match=rf"10000000 robots need about [0-9.]+ GB \({each} kB each\), more than the "
                                         r".* GB of memory available; use fewer"):
        make_batch(profile, engine, 10_000_000)


def test_the_implicit_pd_is_refused_outside_mujoco(profile):
    with pytest.raises(EngineError, match="implicit PD is MuJoCo's; this batch runs in pybullet"):
        make_batch(profile, "pybullet", 2, implicit_pd=True)
