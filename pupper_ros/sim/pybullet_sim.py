"""The simulated Pupper in PyBullet: the project's URDF (fixed links merged exactly, pupper_ros/sim/urdf.py), a free
base on a ground plane, PyBullet's own motors off and the shared PD applied as joint torques.

The motors' reflected rotor inertia (armature) acts on the joint coordinate only, as on the real motor: each
actuated joint gets a rotor, a small body on the joint's parent spinning about the joint axis, tied to the joint by
a gear constraint of the profile's ``actuator.gear_ratio``; the rotor carries armature / ratio^2, so the joint feels the armature
while the robot's mass distribution stays the URDF's. PyBullet has no joint armature parameter.
``armature_model="link"`` is the former shortcut (the armature added to each actuated link's inertia tensor),
kept so that what it changes can be measured (tests/test_sim_engines.py, docs/simulation.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from pupper_ros.robot_profile import RobotProfile
from pupper_ros.sim import urdf
from pupper_ros.rotations import rotation_matrix
from pupper_ros.sim.simulation import GRAVITY, NOMINAL_GROUND_FRICTION, Simulation

ARMATURE_MODELS = ("rotor", "link")
SOLVER_ITERATIONS = 50  # PyBullet's default; fewer run faster but break the left-right symmetry of the physics (docs/simulation.md)


@contextlib.contextmanager
def _quiet_c_output():
    """PyBullet prints banners and URDF-merge chatter from C; keep them off the user's terminal.
    Failures still surface: PyBullet raises ``pybullet.error``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


with _quiet_c_output():
    import pybullet
    from pybullet_utils import bullet_client


class PyBulletSimulation(Simulation):
    """One Pupper on flat ground in its own PyBullet client (DIRECT unless ``gui``)."""

    engine = "pybullet"

    def __init__(self, profile: RobotProfile, *, physics_dt: float | None = None, gui: bool = False,
                 armature_model: str = "rotor"):
        if armature_model not in ARMATURE_MODELS:
            raise ValueError(f"unknown armature model '{armature_model}'; choose one of {', '.join(ARMATURE_MODELS)}")
        from pupper_ros.sim import default_physics_dt

        super().__init__(profile, physics_dt or default_physics_dt(profile, self.engine))
        self.armature_model = armature_model
        with _quiet_c_output():
            self.client = bullet_client.BulletClient(connection_mode=pybullet.GUI if gui else pybullet.DIRECT)
        c = self.client
        c.setTimeStep(self.physics_dt)
        c.setPhysicsEngineParameter(numSolverIterations=SOLVER_ITERATIONS)
        c.setGravity(0, 0, -GRAVITY)
        self.ground = c.createMultiBody(0, c.createCollisionShape(pybullet.GEOM_PLANE))

        armature = profile.actuator.armature
        rotors = armature_model == "rotor" and armature > 0
        root = urdf.parse(profile.urdf_path)
        merged = urdf.merge_fixed_links(root)  # feet and IMU into their links (see pupper_ros/sim/urdf.py)
        if rotors:
            urdf.add_rotors(root, armature, profile.actuator.gear_ratio)
        else:
            urdf.add_armature_to_links(root, armature)
        urdf.principal_inertials(root)
        with tempfile.NamedTemporaryFile("w", suffix=".urdf", delete=False) as f:
            f.write(urdf.to_text(root))
            path = f.name
        try:
            with _quiet_c_output():
                self.robot = c.loadURDF(path, [0, 0, profile.standing_height], flags=pybullet.URDF_USE_INERTIA_FROM_FILE)
        finally:
            Path(path).unlink(missing_ok=True)

        by_name = {}
        for i in range(c.getNumJoints(self.robot)):
            info = c.getJointInfo(self.robot, i)
            by_name[info[1].decode()] = i
            by_name.setdefault("link:" + info[12].decode(), i)
        missing = [j for j in profile.joints if j not in by_name]
        if missing:
            raise ValueError(f"URDF {profile.urdf_path} lacks joint(s) {', '.join(missing)}")
        self.joint_ids = [by_name[j] for j in profile.joints]
        self.rotor_ids = [by_name[j + urdf.ROTOR_SUFFIX] for j in profile.joints] if rotors else []
        self.leg_link_ids = list(self.joint_ids)  # a joint's index is its child link's

        self.foot_link_ids, feet_offsets = [], []
        for foot in profile.feet:
            owner, _, offset = merged.get(foot, (foot, None, np.zeros(3)))
            self.foot_link_ids.append(by_name["link:" + owner])
            feet_offsets.append(offset)
        self.foot_offsets = np.array(feet_offsets)
        self._foot_radius = urdf.sphere_radius(profile.urdf_path, profile.feet[0])

        # PyBullet's base pose is that of the base's inertial frame; base_link's is this offset away.
        self._base_inertial = c.getDynamicsInfo(self.robot, -1)[3:5]
        self._base_inertial_inverse = c.invertTransform(*self._base_inertial)
        # (mass, inertia diagonal) per link; PyBullet recomputes inertia from collision shapes when only mass is
        # changed, so both are always set together.
        self._nominal_inertia = {i: c.getDynamicsInfo(self.robot, i)[:3:2] for i in [-1] + self.leg_link_ids}
        self._friction = profile.actuator.friction
        for rotor in self.rotor_ids:  # a free rotor: no default motor, no damping of its own
            c.setJointMotorControl2(self.robot, rotor, pybullet.VELOCITY_CONTROL, force=0.0)
            c.changeDynamics(self.robot, rotor, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0,
                             maxJointVelocity=10 * profile.actuator.gear_ratio * profile.velocity_limit)  # Bullet caps at 100 rad/s
        for joint, rotor in zip(self.joint_ids, self.rotor_ids):
            # Gear constraint: rotor speed = -ratio x joint speed (the sign is PyBullet's convention).
            gear = c.createConstraint(self.robot, joint, self.robot, rotor, pybullet.JOINT_GEAR, [0, 0, 1], [0, 0, 0], [0, 0, 0])
            c.changeConstraint(gear, gearRatio=1.0 / profile.actuator.gear_ratio, maxForce=1e4, erp=0.0)
        self._set_friction_motors()
        for j in self.joint_ids:
            c.changeDynamics(self.robot, j, linearDamping=0.0, angularDamping=0.0, jointDamping=profile.actuator.damping)
        # Bullet multiplies the two bodies' friction coefficients: feet at 1, so the ground's value is the contact's.
        c.changeDynamics(self.ground, -1, lateralFriction=NOMINAL_GROUND_FRICTION)
        for link in self.foot_link_ids:
            c.changeDynamics(self.robot, link, lateralFriction=1.0)
        c.changeDynamics(self.robot, -1, linearDamping=0.0, angularDamping=0.0)

    def _set_friction_motors(self) -> None:
        # A zero-velocity motor capped at the friction torque acts as the joints' Coulomb friction.
        self.client.setJointMotorControlArray(
            self.robot, self.joint_ids, pybullet.VELOCITY_CONTROL,
            targetVelocities=[0.0] * len(self.joint_ids), forces=[self._friction] * len(self.joint_ids),
        )

    @property
    def foot_radius(self) -> float:
        return self._foot_radius

    def close(self) -> None:
        try:
            self.client.disconnect()
        except pybullet.error:
            pass

    # --- state -------------------------------------------------------------------------------------------------
    def reset(self, joint_position: np.ndarray | None = None, base_height: float | None = None,
              base_xy=(0.0, 0.0), base_yaw: float = 0.0) -> None:
        c = self.client
        q = self.profile.default_pose if joint_position is None else np.asarray(joint_position)
        height = self.profile.standing_height if base_height is None else base_height
        self.set_base_pose([base_xy[0], base_xy[1], height], c.getQuaternionFromEuler([0, 0, base_yaw]))
        c.resetBaseVelocity(self.robot, [0, 0, 0], [0, 0, 0])
        for j, qj in zip(self.joint_ids, q):
            c.resetJointState(self.robot, j, float(qj), 0.0)
        for rotor in self.rotor_ids:
            c.resetJointState(self.robot, rotor, 0.0, 0.0)
        self._set_friction_motors()
        self.targets = np.array(q, dtype=np.float64)
        self.torque[:] = 0.0

    def set_base_pose(self, position, orientation_xyzw) -> None:
        com, orientation = self.client.multiplyTransforms(list(position), list(orientation_xyzw), *self._base_inertial)
        self.client.resetBasePositionAndOrientation(self.robot, com, orientation)

    def _com_lever(self) -> np.ndarray:
        """From base_link's origin to the base's centre of mass, world frame."""
        com, _ = self.client.getBasePositionAndOrientation(self.robot)
        return np.array(com) - self.base_pose()[0]

    def set_base_velocity(self, linear_world, angular_world) -> None:
        # PyBullet's base velocity is its centre of mass's; base_link's origin moves with it and the rotation.
        com_velocity = np.asarray(linear_world, dtype=np.float64) + np.cross(angular_world, self._com_lever())
        self.client.resetBaseVelocity(self.robot, com_velocity.tolist(), list(angular_world))

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.client.getJointStates(self.robot, self.joint_ids)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        com, orientation = self.client.getBasePositionAndOrientation(self.robot)
        position, orientation = self.client.multiplyTransforms(com, orientation, *self._base_inertial_inverse)
        return np.array(position), np.array(orientation)

    def base_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        linear, angular = self.client.getBaseVelocity(self.robot)
        angular = np.array(angular)
        return np.array(linear) - np.cross(angular, self._com_lever()), angular

    def _step_physics(self, joint_torque: np.ndarray, base_torque_world: np.ndarray | None) -> None:
        c = self.client
        if base_torque_world is not None:
            c.applyExternalTorque(self.robot, -1, base_torque_world.tolist(), pybullet.WORLD_FRAME)
        c.setJointMotorControlArray(self.robot, self.joint_ids, pybullet.TORQUE_CONTROL, forces=joint_torque)
        c.stepSimulation()

    def foot_positions(self) -> np.ndarray:
        links = self.client.getLinkStates(self.robot, self.foot_link_ids)
        out = np.empty((len(links), 3))
        for k, link in enumerate(links):
            out[k] = np.array(link[4]) + rotation_matrix(link[5]) @ self.foot_offsets[k]
        return out

    def contacts(self) -> tuple[np.ndarray, bool]:
        touching = {pt[3] for pt in self.client.getContactPoints(self.robot, self.ground)}
        return np.array([link in touching for link in self.foot_link_ids]), (-1 in touching)

    # --- randomization -----------------------------------------------------------------------------------------
    def set_ground_friction(self, friction: float) -> None:
        self.client.changeDynamics(self.ground, -1, lateralFriction=friction)

    def set_mass_scales(self, base: float, links: np.ndarray) -> None:
        for link, scale in zip([-1] + self.leg_link_ids, [base, *links]):
            mass, inertia = self._nominal_inertia[link]
            self.client.changeDynamics(self.robot, link, mass=mass * scale, localInertiaDiagonal=[scale * i for i in inertia])

    def ground_friction(self) -> float:
        return self.client.getDynamicsInfo(self.ground, -1)[1]

    def link_masses(self) -> np.ndarray:
        return np.array([self.client.getDynamicsInfo(self.robot, link)[0] for link in [-1] + self.leg_link_ids])

    def set_gravity(self, gravity_world) -> None:
        self.client.setGravity(*gravity_world)

    def base_mass(self) -> float:
        return self.client.getDynamicsInfo(self.robot, -1)[0]

    def total_mass(self) -> float:
        c = self.client
        return sum(c.getDynamicsInfo(self.robot, i)[0] for i in range(-1, c.getNumJoints(self.robot)))

    def render(self, width: int = 320, height: int = 240, distance: float = 0.8) -> np.ndarray:
        """TinyRenderer: works headless."""
        c = self.client
        target = self.base_pose()[0].tolist()
        view = c.computeViewMatrixFromYawPitchRoll(target, distance, 30.0, -20.0, 0.0, 2)
        projection = c.computeProjectionMatrixFOV(60, width / height, 0.05, 5.0)
        _, _, rgba, _, _ = c.getCameraImage(width, height, view, projection, renderer=pybullet.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
