"""Wiring faults a simulated robot can report, as a miswired or mis-homed real one would: what ``pupper-preflight``
must find before a first step. Used by the firmware emulator and the ros2_control test stand-in.

- ``flipped``: joints whose reading has its sign reversed (a motor mounted or configured the other way round);
- ``offset``: joint -> rad added to its reading (a homing that ended a motor turn away: 2 pi / gear ratio);
- ``missing``: joints left out of the joint states (ros2_control only: the serial frame has a fixed layout);
- ``imu_yaw_degrees``: the IMU frame turned about z from the model's (a board mounted rotated);
- ``rate_divisor``: the sensors publish one message in this many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pupper_ros.rotations import rotation_matrix


@dataclass
class SensorFaults:
    flipped: list[str] = field(default_factory=list)
    offset: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    imu_yaw_degrees: float = 0.0
    rate_divisor: int = 1

    @classmethod
    def from_dict(cls, raw: dict | None) -> "SensorFaults":
        return cls(**(raw or {}))

    def joints(self, names, position: np.ndarray, velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The readings as the miswired robot reports them (copies), in the order of ``names``."""
        position, velocity = np.array(position, dtype=float), np.array(velocity, dtype=float)
        names = list(names)
        for joint in self.flipped:
            position[names.index(joint)] *= -1.0
            velocity[names.index(joint)] *= -1.0
        for joint, value in self.offset.items():
            position[names.index(joint)] += value
        return position, velocity

    def imu(self, orientation_xyzw: np.ndarray, angular_velocity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Orientation and body rates as an IMU turned by ``imu_yaw_degrees`` about z reports them."""
        if not self.imu_yaw_degrees:
            return np.asarray(orientation_xyzw, float), np.asarray(angular_velocity, float)
        half = math.radians(self.imu_yaw_degrees) / 2
        mount = np.array([0.0, 0.0, math.sin(half), math.cos(half)])  # the IMU frame in the body frame
        return _multiply(orientation_xyzw, mount), rotation_matrix(mount).T @ np.asarray(angular_velocity, float)


def _multiply(a, b) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])
