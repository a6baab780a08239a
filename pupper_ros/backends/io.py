"""What passes between the runtime and a backend: a sensor sample in, a joint command out (the profile's joint
order, SI units, the body frame of REP 103)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pupper_ros.contract import all_finite


@dataclass
class SensorSample:
    """One reading of the robot's sensors, in the profile's joint order and the body frame (REP 103)."""

    stamp: float  # s, on the control loop's clock
    joint_position: np.ndarray
    joint_velocity: np.ndarray
    orientation: np.ndarray  # xyzw, body to world (the IMU's filter)
    angular_velocity: np.ndarray  # rad/s, body frame
    linear_acceleration: np.ndarray | None = None  # m/s^2, body frame, +g up at rest

    @classmethod
    def zeros(cls, n: int) -> "SensorSample":
        return cls(0.0, np.zeros(n), np.zeros(n), np.array([0.0, 0.0, 0.0, 1.0]), np.zeros(3), np.zeros(3))

    def copy_from(self, other: "SensorSample") -> None:
        """Take ``other``'s values into this sample's own arrays (no allocation while both have an acceleration)."""
        self.stamp = other.stamp
        self.joint_position[:] = other.joint_position
        self.joint_velocity[:] = other.joint_velocity
        self.orientation[:] = other.orientation
        self.angular_velocity[:] = other.angular_velocity
        if other.linear_acceleration is None:
            self.linear_acceleration = None
        elif self.linear_acceleration is None:
            self.linear_acceleration = np.array(other.linear_acceleration, dtype=np.float64)
        else:
            self.linear_acceleration[:] = other.linear_acceleration

    def is_finite(self) -> bool:
        return (all_finite(self.joint_position) and all_finite(self.joint_velocity)
                and all_finite(self.orientation) and all_finite(self.angular_velocity))


class JointCommand:
    """What goes to the motors: position targets with per-joint PD gains (Nm/rad, Nm s/rad)."""

    def __init__(self, n: int):
        self.position = np.zeros(n)
        self.kp = np.zeros(n)
        self.kd = np.zeros(n)

    def copy_from(self, other: "JointCommand") -> None:
        self.position[:] = other.position
        self.kp[:] = other.kp
        self.kd[:] = other.kd
