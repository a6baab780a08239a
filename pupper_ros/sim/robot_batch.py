"""What every engine's batch of simulated Puppers shares: the refusal, before anything is allocated, of no robots or
of more than the memory available holds (each engine states what one of its robots takes), and the actuator and
body fields training randomizes, as arrays over robots (``[robots, ...]``, the single ``Simulation``'s fields)."""

from __future__ import annotations

import os

import numpy as np

from pupper_ros.robot_profile import RobotProfile


class BatchError(ValueError):
    """A batch that cannot be built; the message names what was wrong."""


def available_memory() -> int:
    """Bytes the kernel says a new allocation can get now (MemAvailable), or the physical memory where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_batch_size(robots: int, bytes_per_robot: int) -> None:
    """Refuse (BatchError) a batch of fewer than one robot, or one whose estimate exceeds the memory available."""
    if robots < 1:
        raise BatchError(f"a batch needs at least one robot, got {robots}")
    estimate, limit = robots * bytes_per_robot, available_memory()
    if estimate > limit:
        raise BatchError(f"{robots} robots need about {estimate / 1e9:.1f} GB ({bytes_per_robot / 1e3:,.0f} kB each), "
                         f"more than the {limit / 1e9:.1f} GB of memory available; use fewer")


class RobotBatch:
    """``robots`` Puppers of ``profile``: the fields every engine's batch has. Subclasses name their ``engine`` and
    ``BYTES_PER_ROBOT`` and build their physics after ``super().__init__``."""

    engine = ""
    BYTES_PER_ROBOT = 0

    def __init__(self, profile: RobotProfile, robots: int):
        check_batch_size(robots, self.BYTES_PER_ROBOT)
        self.profile = profile
        self.robots = robots
        n = profile.num_joints
        self.kp = np.full((robots, n), profile.kp)
        self.kd = np.full((robots, n), profile.kd)
        self.motor_strength = np.ones((robots, n))
        self.base_com_shift = np.zeros((robots, 3))  # body frame, as Simulation.base_com_shift
        self.targets = np.tile(profile.default_pose, (robots, 1))
        self.torque = np.zeros((robots, n))
