"""What a simulated Pupper is, whichever engine runs it: its state, its sensors, its actuators (the motor board's PD
computed at every physics step from the joint targets, saturated at the torque limit), reset, the randomization
fields, render. Each engine module implements the physics hooks; everything else is shared here, so both engines
drive the same robot from the same profile.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from pupper_ros.robot_profile import RobotProfile
from pupper_ros.rotations import rotation_matrix

GRAVITY = 9.81
NOMINAL_GROUND_FRICTION = 1.0


@dataclass
class SimState:
    """What the simulator knows; the runtime only ever sees the sensor part (IMU and joints)."""

    base_position: np.ndarray  # world, base_link origin
    base_orientation: np.ndarray  # xyzw, body to world
    base_linear_velocity: np.ndarray  # body frame
    base_angular_velocity: np.ndarray  # body frame (what the gyro reads)
    joint_position: np.ndarray  # profile order
    joint_velocity: np.ndarray
    joint_torque: np.ndarray  # the torque applied during the last physics step


def tilt(orientation_xyzw: np.ndarray) -> float:
    x, y, z, w = orientation_xyzw
    up_z = 1.0 - 2.0 * (x * x + y * y)
    return math.acos(max(-1.0, min(1.0, up_z)))


class Simulation(ABC):
    """One Pupper on flat ground. ``kp``, ``kd``, ``motor_strength`` and ``base_com_shift`` are the actuator and body
    randomization fields; the engine-specific ones are set through methods."""

    engine: str = ""

    def __init__(self, profile: RobotProfile, physics_dt: float):
        self.profile = profile
        self.physics_dt = physics_dt
        n = profile.num_joints
        self.kp = np.full(n, profile.kp)
        self.kd = np.full(n, profile.kd)
        self.motor_strength = np.ones(n)
        self.base_com_shift = np.zeros(3)  # body frame; acts through gravity on the base (training randomization)
        self.targets = profile.default_pose.copy()
        self.torque = np.zeros(n)

    # --- actuators (shared) ----------------------------------------------------------------------------------
    def set_targets(self, targets: np.ndarray, kp: np.ndarray | float | None = None, kd: np.ndarray | float | None = None) -> None:
        self.targets = np.asarray(targets, dtype=np.float64)
        if kp is not None:
            self.kp = np.broadcast_to(np.asarray(kp, dtype=np.float64), self.targets.shape).copy()
        if kd is not None:
            self.kd = np.broadcast_to(np.asarray(kd, dtype=np.float64), self.targets.shape).copy()

    def step(self, substeps: int = 1) -> None:
        """Advance ``substeps`` physics steps, recomputing the PD torque at each (the motor controller's loop)."""
        limit = self.profile.torque_limit
        com_torque = self._com_shift_torque() if np.any(self.base_com_shift) else None
        for _ in range(substeps):
            q, qd = self.joint_states()
            torque = self.kp * (self.targets - q) - self.kd * qd
            np.clip(torque * self.motor_strength, -limit, limit, out=self.torque)
            self._step_physics(self.torque, com_torque)

    def _com_shift_torque(self) -> np.ndarray:
        """A shifted centre of mass, as the moment its weight makes about the modelled one (world frame)."""
        shift = rotation_matrix(self.base_pose()[1]) @ self.base_com_shift
        weight = self.base_mass() * GRAVITY
        return np.array([-shift[1] * weight, shift[0] * weight, 0.0])

    # --- engine hooks ----------------------------------------------------------------------------------------
    @abstractmethod
    def _step_physics(self, joint_torque: np.ndarray, base_torque_world: np.ndarray | None) -> None:
        """One physics step with these joint torques (profile order) and an optional external torque on the base."""

    @abstractmethod
    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions and velocities in profile order."""

    @abstractmethod
    def base_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """base_link origin (world) and orientation (xyzw)."""

    @abstractmethod
    def base_velocity(self) -> tuple[np.ndarray, np.ndarray]:
        """Linear velocity of base_link's origin and angular velocity, both in the world frame."""

    @abstractmethod
    def reset(self, joint_position: np.ndarray | None = None, base_height: float | None = None,
              base_xy=(0.0, 0.0), base_yaw: float = 0.0) -> None:
        """Joints at ``joint_position`` (default pose), base_link at ``base_height`` (standing height), at rest."""

    @abstractmethod
    def set_base_pose(self, position, orientation_xyzw) -> None:
        """Place base_link (world frame), keeping the joints."""

    @abstractmethod
    def set_base_velocity(self, linear_world, angular_world) -> None:
        """Set base_link's velocity (world frame); a push is a change of it."""

    @abstractmethod
    def foot_positions(self) -> np.ndarray:
        """World positions of the foot centres (4 x 3), in the profile's foot order."""

    @abstractmethod
    def contacts(self) -> tuple[np.ndarray, bool]:
        """Whether each foot touches the ground, and whether the base does."""

    @abstractmethod
    def set_ground_friction(self, friction: float) -> None:
        """The feet-ground friction coefficient."""

    @abstractmethod
    def set_mass_scales(self, base: float, links: np.ndarray) -> None:
        """Scale the base's and each leg link's mass and inertia (links in the profile's joint order: the child link
        of each joint) from their URDF values."""

    @abstractmethod
    def ground_friction(self) -> float: ...

    @abstractmethod
    def link_masses(self) -> np.ndarray:
        """The base's mass, then each leg link's in the profile's joint order, as the engine has them now."""

    @abstractmethod
    def set_gravity(self, gravity_world) -> None: ...

    @abstractmethod
    def base_mass(self) -> float: ...

    @abstractmethod
    def total_mass(self) -> float: ...

    @abstractmethod
    def render(self, width: int = 320, height: int = 240, distance: float = 0.8) -> np.ndarray:
        """An RGB frame from a camera following the robot."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def foot_radius(self) -> float: ...

    # --- derived (shared) ------------------------------------------------------------------------------------
    def state(self) -> SimState:
        position, orientation = self.base_pose()
        linear, angular = self.base_velocity()
        rot = rotation_matrix(orientation)
        q, qd = self.joint_states()
        return SimState(
            base_position=position,
            base_orientation=orientation,
            base_linear_velocity=rot.T @ linear,
            base_angular_velocity=rot.T @ angular,
            joint_position=q,
            joint_velocity=qd,
            joint_torque=self.torque.copy(),
        )

    def ground_truth(self):
        """(base position, orientation xyzw, linear and angular velocity in the world frame)."""
        position, orientation = self.base_pose()
        linear, angular = self.base_velocity()
        return position, orientation, linear, angular

    def push(self, velocity_change_world) -> None:
        linear, angular = self.base_velocity()
        self.set_base_velocity(linear + np.asarray(velocity_change_world, dtype=np.float64), angular)
