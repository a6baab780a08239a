"""The robot in each engine against its URDF, its profile and the reference kinematics, in real PyBullet and real
MuJoCo: joint order, mass, feet, standing, and the mass distribution (the composite inertia) the engine really has."""

import numpy as np
import pytest

from pupper_ros.robot_profile import load_robot_profile
from pupper_ros.sim import ENGINES, make_simulation, urdf
from pupper_ros.rotations import rotation_matrix
from pupper_ros.sim.simulation import tilt


@pytest.fixture(params=list(ENGINES))
def sim(request, profile):
    s = make_simulation(profile, request.param)
    yield s
    s.close()


def joint_positions_in_world(sim, profile, joints) -> np.ndarray:
    """World position of these joints' origins, from the base pose the engine reports and the URDF's kinematics."""
    root = urdf.parse(profile.urdf_path)
    poses = urdf.link_poses(root, dict(zip(profile.joints, sim.joint_states()[0])))
    child = {j.get("name"): j.find("child").get("link") for j in root.findall("joint")}
    position, orientation = sim.base_pose()
    rot = rotation_matrix(orientation)
    return np.array([position + rot @ poses[child[j]][1] for j in joints])


def test_joints_are_mapped_into_the_profile_order(sim, profile):
    q = profile.default_pose + np.arange(12) * 0.01
    sim.reset(joint_position=q, base_height=0.5)
    np.testing.assert_allclose(sim.joint_states()[0], q, atol=1e-12)


def test_pybullet_numbers_its_joints_its_own_way_and_the_simulation_maps_them_by_name(profile):
    s = make_simulation(profile, "pybullet")
    c = s.client
    names = [c.getJointInfo(s.robot, j)[1].decode() for j in s.joint_ids]
    s.close()
    assert names == list(profile.joints)


def test_total_mass_is_the_urdfs(sim, profile):
    mass, _, _ = urdf.composite_inertia(urdf.parse(profile.urdf_path), {})
    assert sim.total_mass() == pytest.approx(mass, rel=1e-6)  # armature is inertia only: no mass added
    assert abs(mass - profile.mass) / profile.mass < 0.05


def test_profile_limits_are_urdf_ranges_inset_by_0_1_rad(profile):
    root = urdf.parse(profile.urdf_path)
    limits = {j.get("name"): j.find("limit") for j in root.findall("joint") if j.get("type") == "revolute"}
    urdf_lower = np.array([float(limits[j].get("lower")) for j in profile.joints])
    urdf_upper = np.array([float(limits[j].get("upper")) for j in profile.joints])
    np.testing.assert_allclose(profile.lower_limits, urdf_lower + 0.1, atol=1e-9)
    np.testing.assert_allclose(profile.upper_limits, urdf_upper - 0.1, atol=1e-9)
    assert all(float(limits[j].get("effort")) == profile.torque_limit for j in profile.joints)


def test_default_pose_puts_each_foot_where_the_kinematics_say(sim, profile):
    # pupper-kinematics.md: at the default pose each foot centre is (-0.00926, -/+0.0180, -0.14144) from its hip.
    sim.reset(base_height=0.5)
    feet, hips = sim.foot_positions(), joint_positions_in_world(sim, profile, profile.joints[::3])
    for k, foot in enumerate(profile.feet):
        side = -1.0 if "_r_" in foot else 1.0
        np.testing.assert_allclose(feet[k] - hips[k], [-0.00926, side * 0.0180, -0.14144], atol=2e-4)


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
    feet, base = sim.contacts()
    assert np.all(feet) and not base


def engine_composite_inertia(sim) -> tuple[float, np.ndarray, np.ndarray]:
    """The robot's mass, centre of mass and inertia about it in base_link's frame, from the masses, inertias and
    poses the engine itself reports for its bodies (nothing from the URDF)."""
    base_position, base_orientation = sim.base_pose()
    to_base = rotation_matrix(base_orientation).T
    bodies = []
    if sim.engine == "pybullet":
        c = sim.client
        com, orientation = c.getBasePositionAndOrientation(sim.robot)
        frames = [(c.getDynamicsInfo(sim.robot, -1), com, orientation)]
        for i in range(c.getNumJoints(sim.robot)):
            state = c.getLinkState(sim.robot, i, computeForwardKinematics=True)
            frames.append((c.getDynamicsInfo(sim.robot, i), state[0], state[1]))
        for info, com, orientation in frames:
            rot = to_base @ rotation_matrix(orientation)
            bodies.append((info[0], to_base @ (np.array(com) - base_position), rot @ np.diag(info[2]) @ rot.T))
    else:
        m, d = sim.model, sim.data
        for b in range(1, m.nbody):
            rot = to_base @ d.ximat[b].reshape(3, 3)
            bodies.append((m.body_mass[b], to_base @ (d.xipos[b] - base_position), rot @ np.diag(m.body_inertia[b]) @ rot.T))
    return urdf.combine_inertia(bodies)


@pytest.mark.parametrize("robot", ["pupper_v3", "pupper_v2"])
@pytest.mark.parametrize("engine", list(ENGINES))
def test_the_engines_robot_has_the_urdfs_mass_distribution(engine, robot):
    """The rotor inertia acts on the joints only, and fixed links are merged exactly: at the default pose the body's
    composite inertia about its centre of mass is the URDF's within 1 % on every axis, its centre of mass within 1 mm."""
    profile = load_robot_profile(robot)
    mass, com, inertia = urdf.composite_inertia(urdf.parse(profile.urdf_path), dict(zip(profile.joints, profile.default_pose)))
    sim = make_simulation(profile, engine)
    try:
        sim.reset(base_height=0.5)
        sim_mass, sim_com, sim_inertia = engine_composite_inertia(sim)
    finally:
        sim.close()
    assert sim_mass == pytest.approx(mass, rel=1e-6)
    np.testing.assert_allclose(sim_com, com, atol=1e-3)
    np.testing.assert_allclose(np.diag(sim_inertia), np.diag(inertia), rtol=0.01)


def test_armature_on_the_links_makes_a_robot_harder_to_tip_than_its_urdf(profile):
    """What the former shortcut did, kept measurable: the rotor inertia added to each leg link's tensor weighs on
    every motion of the link, and the body's roll and pitch inertia grow by more than half."""
    _, _, inertia = urdf.composite_inertia(urdf.parse(profile.urdf_path), dict(zip(profile.joints, profile.default_pose)))
    sim = make_simulation(profile, "pybullet", armature_model="link")
    try:
        sim.reset(base_height=0.5)
        _, _, shortcut = engine_composite_inertia(sim)
    finally:
        sim.close()
    assert np.all(np.diag(shortcut)[:2] / np.diag(inertia)[:2] > 1.5)


def test_pupper_v2_profile_and_urdf_agree_with_the_reference_kinematics():
    """Pupper v2 is a profile file and a URDF, no new code: its feet sit where the kinematics say at the standing
    pose, and it stands on its PD gains."""
    v2 = load_robot_profile("pupper_v2")
    sim = make_simulation(v2, "pybullet")
    try:
        sim.reset()
        feet, hips = sim.foot_positions(), joint_positions_in_world(sim, v2, v2.joints[1::3])
        for k in range(4):
            assert hips[k][2] - feet[k][2] == pytest.approx(0.1568, abs=5e-4)  # pupper-kinematics.md, standing pose
        sim.set_targets(v2.default_pose)
        sim.step(int(3.0 / sim.physics_dt))
        state = sim.state()
        assert state.base_position[2] > 0.14 and tilt(state.base_orientation) < 0.1
    finally:
        sim.close()


def test_rotating_a_batch_of_vectors_by_quaternions_is_multiplying_by_their_rotation_matrices():
    from pupper_ros.rotations import rotate

    rng = np.random.default_rng(3)
    quaternions = rng.normal(size=(50, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    vectors = rng.normal(size=(50, 3))
    expected = np.stack([rotation_matrix(q) @ v for q, v in zip(quaternions, vectors)])
    np.testing.assert_allclose(rotate(quaternions, vectors), expected, atol=1e-12)
    from pupper_ros.rotations import world_z_of_body_axes

    np.testing.assert_allclose(world_z_of_body_axes(quaternions), [rotation_matrix(q)[2] for q in quaternions], atol=1e-12)
