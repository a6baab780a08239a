"""The policy contract: layout, a hand-computed observation, the action mapping and the gait clock."""

import math

import numpy as np

from pupper_ros.contract import (
    CONTRACT_V1,
    ActionMapping,
    GaitClock,
    ObservationBuilder,
    projected_gravity,
    tilt_from_gravity,
)


def test_v1_layout_and_size():
    names = [t.name for t in CONTRACT_V1.terms]
    assert names == ["base_angular_velocity", "projected_gravity", "velocity_command", "gait_clock",
                     "joint_position_offset", "joint_velocity", "last_action"]
    assert "base_linear_velocity" not in names  # Pupper has no sensor for it
    assert CONTRACT_V1.observation_size == 47
    assert all(len(t.scale) == t.size for t in CONTRACT_V1.terms)


def test_observation_from_a_known_state(profile):
    builder = ObservationBuilder(CONTRACT_V1, profile)
    joint_position = profile.default_pose + 0.1 * np.arange(12)
    obs = builder.build(
        base_angular_velocity=np.array([0.4, -0.8, 1.2]),
        projected_gravity=np.array([0.0, 0.0, -1.0]),
        velocity_command=np.array([0.5, -0.25, 1.0]),
        gait_phase=0.25,
        joint_position=joint_position,
        joint_velocity=np.full(12, 10.0),
        last_action=np.linspace(-1, 1, 12),
    )
    expected = np.concatenate([
        [0.1, -0.2, 0.3],  # angular velocity x 0.25
        [0.0, 0.0, -1.0],
        [1.0, -0.5, 0.25],  # command x (2, 2, 0.25)
        [1.0, 0.0],  # sin, cos of 2 pi * 0.25
        0.1 * np.arange(12),  # position minus default
        np.full(12, 0.5),  # velocity x 0.05
        np.linspace(-1, 1, 12),
    ])
    assert obs.dtype == np.float32 and obs.shape == (47,)
    np.testing.assert_allclose(obs, expected, atol=1e-6)


def test_observation_is_clipped(profile):
    builder = ObservationBuilder(CONTRACT_V1, profile)
    obs = builder.build(base_angular_velocity=np.array([1e6, 0, 0]), projected_gravity=np.zeros(3),
                        velocity_command=np.zeros(3), gait_phase=0.0, joint_position=profile.default_pose,
                        joint_velocity=np.full(12, -1e9), last_action=np.zeros(12))
    assert obs[0] == 100.0
    assert np.all(obs[23:35] == -100.0)


def test_action_mapping_scales_offsets_and_clips_to_limits(profile):
    mapping = ActionMapping(CONTRACT_V1, profile)
    np.testing.assert_allclose(mapping.to_targets(np.zeros(12)), profile.default_pose)
    action = np.zeros(12)
    action[0] = 1.0
    assert mapping.to_targets(action)[0] == profile.default_pose[0] + CONTRACT_V1.action_scale
    huge = mapping.to_targets(np.full(12, 1e9))
    assert np.all(huge <= profile.upper_limits) and np.all(huge >= profile.lower_limits)
    np.testing.assert_allclose(huge, np.minimum(profile.default_pose + CONTRACT_V1.action_scale * CONTRACT_V1.action_clip, profile.upper_limits))


def test_projected_gravity_level_and_tilted():
    np.testing.assert_allclose(projected_gravity(np.array([0, 0, 0, 1.0])), [0, 0, -1], atol=1e-12)
    # Pitched nose-down by 0.3 rad about y: gravity gains a +x component in the body frame... sign check by rotation.
    angle = 0.3
    q = np.array([0.0, math.sin(angle / 2), 0.0, math.cos(angle / 2)])
    g = projected_gravity(q)
    np.testing.assert_allclose(g, [math.sin(angle), 0.0, -math.cos(angle)], atol=1e-12)
    assert math.isclose(tilt_from_gravity(g), angle, abs_tol=1e-9)


def test_gait_clock_advances_at_its_frequency():
    clock = GaitClock(CONTRACT_V1)
    steps = int(CONTRACT_V1.control_rate_hz / CONTRACT_V1.gait_frequency_hz)  # one period
    for _ in range(steps // 2):
        clock.advance()
    assert math.isclose(clock.phase, 0.5, abs_tol=1e-9)
    for _ in range(steps // 2):
        clock.advance()
    assert clock.phase < 1e-9 or clock.phase > 1 - 1e-9


def test_the_demo_asks_each_robot_for_what_it_was_trained_to_do():
    """The demo's script and the evaluation's suite come from one rule over the profile's command ranges: the v3 demo
    is the script it always was (forward 0.3, turning 1.0, sideways 0.3, backward 0.3); the v2 demo asks for v2's."""
    from pupper_ros.command_suite import command_suite, demo_script
    from pupper_ros.robot_profile import load_robot_profile

    v3, v2 = load_robot_profile("pupper_v3"), load_robot_profile("pupper_v2")
    assert [c for _, _, c in demo_script(v3)] == [(0.0, 0.0, 0.0), (0.3, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.3, 0.0),
                                                  (-0.3, 0.0, 0.0), (0.0, 0.0, 0.0)]
    for profile in (v3, v2):
        suite = set(command_suite(profile).values())
        for name, _, command in demo_script(profile):
            assert command in suite, (profile.name, name, command)  # every demo segment is a command the bar checks
            assert all(lo <= c <= hi for c, lo, hi in zip(command, profile.command_low, profile.command_high))
