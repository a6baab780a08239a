"""The Pupper v3 URDF against its profile and the reference kinematics, in real PyBullet."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pupper_ros.simulation import PupperSimulation, tilt


@pytest.fixture
def sim(profile):
    s = PupperSimulation(profile)
    yield s
    s.close()


def test_urdf_has_the_profile_joints_in_order(sim, profile):
    c = sim.client
    revolute = {c.getJointInfo(sim.robot, i)[1].decode() for i in range(c.getNumJoints(sim.robot))
                if c.getJointInfo(sim.robot, i)[2] == c.JOINT_REVOLUTE}
    assert revolute == set(profile.joints)
    # PyBullet numbers joints its own way; the simulation maps them by name into the profile's order.
    names = [c.getJointInfo(sim.robot, j)[1].decode() for j in sim.joint_ids]
    assert names == list(profile.joints)
    q = np.arange(12) * 0.01
    sim.reset(joint_position=q)
    np.testing.assert_allclose(sim.joint_states()[0], q, atol=1e-12)


def test_total_mass_within_5_percent_of_profile(sim, profile):
    # The sim adds no mass for armature (it is inertia only), so this is the URDF's mass.
    assert abs(sim.total_mass() - profile.mass) / profile.mass < 0.05


def test_profile_limits_are_urdf_ranges_inset_by_0_1_rad(profile):
    root = ET.parse(profile.urdf_path).getroot()
    limits = {j.get("name"): j.find("limit") for j in root.findall("joint") if j.get("type") == "revolute"}
    urdf_lower = np.array([float(limits[j].get("lower")) for j in profile.joints])
    urdf_upper = np.array([float(limits[j].get("upper")) for j in profile.joints])
    np.testing.assert_allclose(profile.lower_limits, urdf_lower + 0.1, atol=1e-9)
    np.testing.assert_allclose(profile.upper_limits, urdf_upper - 0.1, atol=1e-9)
    assert all(float(limits[j].get("effort")) == profile.torque_limit for j in profile.joints)


def test_default_pose_puts_each_foot_where_the_kinematics_say(sim, profile):
    # pupper-kinematics.md: at the default pose each foot centre is (-0.00926, -/+0.0180, -0.14144) from its hip.
    c = sim.client
    sim.reset()
    feet = sim.foot_positions()
    for k, foot in enumerate(profile.feet):
        hip_joint = sim.joint_ids[3 * k]  # each leg's _1 joint, in profile order
        hip = np.array(c.getLinkState(sim.robot, hip_joint, computeForwardKinematics=True)[4])
        side = -1.0 if "_r_" in foot else 1.0
        rel = feet[k] - hip
        np.testing.assert_allclose(rel, [-0.00926, side * 0.0180, -0.14144], atol=2e-4)


def test_stands_for_5_s_on_the_profile_gains(sim, profile):
    sim.reset()
    sim.set_targets(profile.default_pose, kp=profile.kp, kd=profile.kd)
    sim.step(int(round(0.5 / sim.physics_dt)))  # settle onto the feet
    start = sim.state().base_position.copy()
    heights = []
    for _ in range(50):
        sim.step(int(round(0.1 / sim.physics_dt)))
        state = sim.state()
        heights.append(state.base_position[2])
        assert tilt(state.base_orientation) < 0.1
    end = sim.state().base_position
    assert np.linalg.norm(end[:2] - start[:2]) < 0.02
    assert min(heights) > 0.12  # still standing, not sagged onto the body
    assert np.all(sim.foot_contacts())


def test_pupper_v2_profile_and_urdf_agree_with_the_reference_kinematics():
    """Pupper v2 is a profile file and a URDF, no new code: it loads, weighs what the reference says, its feet sit
    where the kinematics say at the standing pose, and it stands on its PD gains."""
    from pupper_ros.robot_profile import load_robot_profile

    v2 = load_robot_profile("pupper_v2")
    sim = PupperSimulation(v2)
    try:
        assert abs(sim.total_mass() - v2.mass) / v2.mass < 0.05
        sim.reset()
        feet = sim.foot_positions()
        for k in range(4):
            hip = np.array(sim.client.getLinkState(sim.robot, sim.joint_ids[3 * k + 1], computeForwardKinematics=True)[4])
            assert hip[2] - feet[k][2] == pytest.approx(0.1568, abs=5e-4)  # pupper-kinematics.md, standing pose
        sim.set_targets(v2.default_pose)
        sim.step(int(3.0 / sim.physics_dt))
        state = sim.state()
        assert state.base_position[2] > 0.14 and tilt(state.base_orientation) < 0.1
    finally:
        sim.close()
