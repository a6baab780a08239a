"""The simulated Pupper: PyBullet with the project's URDF and the robot's actuator model.

Shared by the training environment and the runtime's simulated backend, so both drive the same robot:
PD torque computed at every physics step from the joint targets, saturated at the torque limit, PyBullet's own
motors disabled; the motors' reflected rotor inertia (armature) and friction from the robot profile.
Imported only by code that simulates: the runtime on a robot never loads PyBullet.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pupper_ros.robot_profile import RobotProfile

GRAVITY = 9.81
NOMINAL_GROUND_FRICTION = 1.0


@dataclass
class SimState:
    """What the simulator knows; the runtime only ever sees the sensor part (IMU and joints)."""

    base_position: np.ndarray  # world
    base_orientation: np.ndarray  # xyzw, body to world
    base_linear_velocity: np.ndarray  # body frame
    base_angular_velocity: np.ndarray  # body frame (what the gyro reads)
    joint_position: np.ndarray  # profile order
    joint_velocity: np.ndarray
    joint_torque: np.ndarray  # the torque applied during the last physics step


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


def urdf_with_armature(urdf_path: Path, armature: float) -> str:
    """URDF text with each actuated joint's rotor inertia added to its child link, as a thin disc about the joint
    axis (izz += a, ixx and iyy += a / 2, keeping the tensor physical). Joint axes are the child frames' z."""
    tree = ET.parse(urdf_path)
    root = tree.getroot()
    actuated = {j.find("child").get("link") for j in root.findall("joint") if j.get("type") == "revolute"}
    for link in root.findall("link"):
        inertia = link.find("inertial/inertia")
        if link.get("name") in actuated and inertia is not None:
            for axis, share in (("izz", 1.0), ("ixx", 0.5), ("iyy", 0.5)):
                inertia.set(axis, repr(float(inertia.get(axis)) + share * armature))
    return ET.tostring(root, encoding="unicode")


def _fixed_child_offsets(urdf_path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """For each link attached by a fixed joint: (parent link, offset in the parent frame)."""
    root = ET.parse(urdf_path).getroot()
    offsets = {}
    for joint in root.findall("joint"):
        if joint.get("type") == "fixed":
            origin = joint.find("origin")
            xyz = np.array([float(v) for v in origin.get("xyz", "0 0 0").split()]) if origin is not None else np.zeros(3)
            offsets[joint.find("child").get("link")] = (joint.find("parent").get("link"), xyz)
    return offsets


def _sphere_radius(urdf_path: Path, link: str) -> float:
    root = ET.parse(urdf_path).getroot()
    for node in root.findall("link"):
        if node.get("name") == link:
            sphere = node.find("collision/geometry/sphere")
            if sphere is not None:
                return float(sphere.get("radius"))
    raise ValueError(f"{urdf_path}: foot link {link} has no sphere collision")


class PupperSimulation:
    """One Pupper on flat ground in its own PyBullet client (DIRECT unless ``gui``)."""

    def __init__(self, profile: RobotProfile, *, physics_dt: float | None = None, gui: bool = False):
        self.profile = profile
        self.physics_dt = physics_dt = physics_dt or profile.physics_dt
        with _quiet_c_output():
            self.client = bullet_client.BulletClient(connection_mode=pybullet.GUI if gui else pybullet.DIRECT)
        c = self.client
        c.setTimeStep(physics_dt)
        c.setGravity(0, 0, -GRAVITY)
        self.ground = c.createMultiBody(0, c.createCollisionShape(pybullet.GEOM_PLANE))

        with tempfile.NamedTemporaryFile("w", suffix=".urdf", delete=False) as f:
            f.write(urdf_with_armature(profile.urdf_path, profile.actuator.armature))
            urdf = f.name
        try:
            # Fixed links (feet, IMU) are merged into their parents: near-massless links destabilise the solver.
            flags = pybullet.URDF_USE_INERTIA_FROM_FILE | pybullet.URDF_MERGE_FIXED_LINKS
            with _quiet_c_output():
                self.robot = c.loadURDF(urdf, [0, 0, profile.standing_height], flags=flags)
        finally:
            Path(urdf).unlink(missing_ok=True)

        by_name = {}
        for i in range(c.getNumJoints(self.robot)):
            info = c.getJointInfo(self.robot, i)
            by_name[info[1].decode()] = i
            by_name.setdefault("link:" + info[12].decode(), i)
        missing = [j for j in profile.joints if j not in by_name]
        if missing:
            raise ValueError(f"URDF {profile.urdf_path} lacks joint(s) {', '.join(missing)}")
        self.joint_ids = [by_name[j] for j in profile.joints]

        offsets = _fixed_child_offsets(profile.urdf_path)
        self.foot_link_ids, feet_offsets = [], []
        for foot in profile.feet:
            parent, offset = offsets.get(foot, (foot, np.zeros(3)))
            self.foot_link_ids.append(by_name["link:" + parent])
            feet_offsets.append(offset)
        self.foot_offsets = np.array(feet_offsets)
        self.foot_radius = _sphere_radius(profile.urdf_path, profile.feet[0])

        self._base_com_offset = np.array(c.getDynamicsInfo(self.robot, -1)[3])  # base_link origin in the COM frame
        n = profile.num_joints
        self.kp = np.full(n, profile.kp)
        self.kd = np.full(n, profile.kd)
        self.motor_strength = np.ones(n)
        self.base_com_shift = np.zeros(3)  # body frame; acts through gravity on the base (training randomization)
        self.targets = profile.default_pose.copy()
        self.torque = np.zeros(n)
        self._friction = profile.actuator.friction
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
        orientation = c.getQuaternionFromEuler([0, 0, base_yaw])
        com = np.array(c.multiplyTransforms([0, 0, 0], orientation, self._base_com_offset, [0, 0, 0, 1])[0])
        c.resetBasePositionAndOrientation(self.robot, [base_xy[0] + com[0], base_xy[1] + com[1], height + com[2]], orientation)
        c.resetBaseVelocity(self.robot, [0, 0, 0], [0, 0, 0])
        for j, qj in zip(self.joint_ids, q):
            c.resetJointState(self.robot, j, float(qj), 0.0)
        self._set_friction_motors()
        self.targets = np.array(q, dtype=np.float64)
        self.torque[:] = 0.0

    def set_targets(self, targets: np.ndarray, kp: np.ndarray | float | None = None, kd: np.ndarray | float | None = None) -> None:
        self.targets = np.asarray(targets, dtype=np.float64)
        if kp is not None:
            self.kp = np.broadcast_to(np.asarray(kp, dtype=np.float64), self.targets.shape).copy()
        if kd is not None:
            self.kd = np.broadcast_to(np.asarray(kd, dtype=np.float64), self.targets.shape).copy()

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.client.getJointStates(self.robot, self.joint_ids)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def step(self, substeps: int = 1) -> None:
        """Advance ``substeps`` physics steps, recomputing the PD torque at each (the motor controller's loop)."""
        c, limit = self.client, self.profile.torque_limit
        com_torque = None
        if np.any(self.base_com_shift):
            # A shifted centre of mass, as the moment its weight makes about the modelled one.
            _, orientation = c.getBasePositionAndOrientation(self.robot)
            shift = np.array(c.getMatrixFromQuaternion(orientation)).reshape(3, 3) @ self.base_com_shift
            weight = c.getDynamicsInfo(self.robot, -1)[0] * GRAVITY
            com_torque = [-shift[1] * weight, shift[0] * weight, 0.0]
        for _ in range(substeps):
            if com_torque is not None:
                c.applyExternalTorque(self.robot, -1, com_torque, pybullet.WORLD_FRAME)
            q, qd = self.joint_states()
            torque = self.kp * (self.targets - q) - self.kd * qd
            np.clip(torque * self.motor_strength, -limit, limit, out=self.torque)
            c.setJointMotorControlArray(self.robot, self.joint_ids, pybullet.TORQUE_CONTROL, forces=self.torque)
            c.stepSimulation()

    def state(self) -> SimState:
        c = self.client
        com_pos, orientation = c.getBasePositionAndOrientation(self.robot)
        lin, ang = c.getBaseVelocity(self.robot)
        rot = np.array(c.getMatrixFromQuaternion(orientation)).reshape(3, 3)
        q, qd = self.joint_states()
        return SimState(
            base_position=np.array(com_pos) - rot @ self._base_com_offset,
            base_orientation=np.array(orientation),
            base_linear_velocity=rot.T @ np.array(lin),
            base_angular_velocity=rot.T @ np.array(ang),
            joint_position=q,
            joint_velocity=qd,
            joint_torque=self.torque.copy(),
        )

    def foot_positions(self) -> np.ndarray:
        """World positions of the foot centres (4 x 3)."""
        links = self.client.getLinkStates(self.robot, self.foot_link_ids)
        out = np.empty((len(links), 3))
        for k, link in enumerate(links):
            rot = np.array(self.client.getMatrixFromQuaternion(link[5])).reshape(3, 3)
            out[k] = np.array(link[4]) + rot @ self.foot_offsets[k]
        return out

    def foot_contacts(self) -> np.ndarray:
        """Whether each foot touches the ground."""
        touching = {pt[3] for pt in self.client.getContactPoints(self.robot, self.ground)}
        return np.array([link in touching for link in self.foot_link_ids])

    def render(self, width: int = 320, height: int = 240, distance: float = 0.8) -> np.ndarray:
        """An RGB frame from a camera following the robot (TinyRenderer: works headless)."""
        c = self.client
        target = self.state().base_position.tolist()
        view = c.computeViewMatrixFromYawPitchRoll(target, distance, 30.0, -20.0, 0.0, 2)
        projection = c.computeProjectionMatrixFOV(60, width / height, 0.05, 5.0)
        _, _, rgba, _, _ = c.getCameraImage(width, height, view, projection, renderer=pybullet.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]

    def total_mass(self) -> float:
        c = self.client
        return sum(c.getDynamicsInfo(self.robot, i)[0] for i in range(-1, c.getNumJoints(self.robot)))


def tilt(orientation_xyzw: np.ndarray) -> float:
    x, y, z, w = orientation_xyzw
    up_z = 1.0 - 2.0 * (x * x + y * y)
    return math.acos(max(-1.0, min(1.0, up_z)))


def stand_demo(seconds: float = 5.0) -> int:
    """Stand the simulated Pupper on its PD gains and report how it held (``python -m pupper_ros.simulation``)."""
    from pupper_ros.robot_profile import load_robot_profile

    profile = load_robot_profile()
    sim = PupperSimulation(profile)
    sim.reset()
    start = sim.state().base_position.copy()
    steps = int(round(seconds / sim.physics_dt))
    print(f"{profile.name}: {profile.num_joints} joints, {sim.total_mass():.3f} kg, standing on kp {profile.kp} kd {profile.kd}")
    for k in range(1, steps + 1):
        sim.step()
        if k % int(round(1.0 / sim.physics_dt)) == 0:
            s = sim.state()
            drift = np.linalg.norm(s.base_position[:2] - start[:2])
            print(f"  t={k * sim.physics_dt:4.1f} s  height {s.base_position[2]:.4f} m  drift {drift * 1000:5.1f} mm  tilt {math.degrees(tilt(s.base_orientation)):4.1f} deg")
    sim.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(stand_demo())
