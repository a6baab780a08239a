"""The robot profile: joint order, limits, default pose, gains and command ranges of one robot, read from YAML.

Every other part of the project takes these values from a ``RobotProfile``; a second robot is a second YAML file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pupper_ros import resources

COMMAND_AXES = ("vx", "vy", "yaw_rate")
DEFAULT_PHYSICS_DT = 0.005  # s, a profile's physics step when its 'simulation' section gives none


class ProfileError(ValueError):
    """A robot profile that is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class ActuatorModel:
    armature: float = 0.0
    damping: float = 0.0
    friction: float = 0.0
    gear_ratio: float = 10.0  # the motor's gearbox; PyBullet's rotor bodies spin this much faster than the joint


@dataclass(frozen=True)
class RobotProfile:
    name: str
    urdf_path: Path
    base_link: str
    imu_link: str
    mass: float
    joints: tuple[str, ...]
    feet: tuple[str, ...]
    default_pose: np.ndarray
    lower_limits: np.ndarray
    upper_limits: np.ndarray
    kp: float
    kd: float
    kp_max: float
    kd_max: float
    torque_limit: float
    velocity_limit: float
    command_low: np.ndarray  # (vx, vy, yaw_rate)
    command_high: np.ndarray
    standing_height: float
    tilt_limit: float
    actuator: ActuatorModel = field(default_factory=ActuatorModel)
    physics_dt: float = DEFAULT_PHYSICS_DT  # s, a physics step at which this model's explicit PD is stable in PyBullet
    extra: dict = field(default_factory=dict)  # backend-specific sections (e.g. ``serial``), validated by their users

    @property
    def num_joints(self) -> int:
        return len(self.joints)


_REQUIRED = (
    "name", "urdf", "base_link", "imu_link", "mass", "joints", "feet", "default_pose", "position_limits",
    "gains", "gain_limits", "torque_limit", "velocity_limit", "command_ranges", "standing_height", "tilt_limit",
)
_OPTIONAL = ("actuator", "simulation", "serial", "rest")


def _actuator(section: dict, positive) -> ActuatorModel:
    unknown = set(section) - {f.name for f in dataclasses.fields(ActuatorModel)}
    if unknown:
        raise ProfileError(f"actuator: unknown key(s) {', '.join(sorted(unknown))}")
    model = ActuatorModel(**section)
    positive("actuator.gear_ratio", model.gear_ratio)
    return model


def load_robot_profile(robot_or_path: str | Path = resources.DEFAULT_ROBOT) -> RobotProfile:
    """Load a profile by robot name (a shipped profile) or by path to a YAML file."""
    path = Path(robot_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = resources.robot_profile_path(str(robot_or_path))
        if not path.is_file():
            raise ProfileError(
                f"unknown robot '{robot_or_path}': no profile {path.name}; shipped robots: "
                f"{', '.join(resources.available_robots())}"
            )
    if not path.is_file():
        raise ProfileError(f"robot profile not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"robot profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProfileError(f"robot profile {path} must be a mapping")
    return profile_from_dict(raw, base_dir=path.parent, source=str(path))


def profile_from_dict(raw: dict, base_dir: Path, source: str = "profile") -> RobotProfile:
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ProfileError(f"{source}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ProfileError(f"{source}: unknown field(s) {', '.join(unknown)}")

    joints = tuple(str(j) for j in raw["joints"])
    n = len(joints)
    if n == 0 or len(set(joints)) != n:
        raise ProfileError(f"{source}: 'joints' must be a non-empty list of distinct names")

    def joint_array(key: str, value) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (n,) or not np.all(np.isfinite(arr)):
            raise ProfileError(f"{source}: '{key}' must be {n} finite numbers, one per joint")
        return arr

    def positive(key: str, value) -> float:
        v = float(value)
        if not math.isfinite(v) or v <= 0:
            raise ProfileError(f"{source}: '{key}' must be a positive number, got {value!r}")
        return v

    limits = raw["position_limits"]
    lower = joint_array("position_limits.lower", limits.get("lower"))
    upper = joint_array("position_limits.upper", limits.get("upper"))
    inverted = [joints[i] for i in np.flatnonzero(lower >= upper)]
    if inverted:
        raise ProfileError(f"{source}: position_limits lower >= upper for {', '.join(inverted)}")
    default = joint_array("default_pose", raw["default_pose"])
    outside = [joints[i] for i in np.flatnonzero((default < lower) | (default > upper))]
    if outside:
        raise ProfileError(f"{source}: default_pose outside position_limits for {', '.join(outside)}")

    kp, kd = positive("gains.kp", raw["gains"]["kp"]), positive("gains.kd", raw["gains"]["kd"])
    kp_max, kd_max = positive("gain_limits.kp", raw["gain_limits"]["kp"]), positive("gain_limits.kd", raw["gain_limits"]["kd"])
    if kp > kp_max or kd > kd_max:
        raise ProfileError(f"{source}: gains (kp {kp}, kd {kd}) exceed gain_limits (kp {kp_max}, kd {kd_max})")

    ranges = raw["command_ranges"]
    if set(ranges) != set(COMMAND_AXES):
        raise ProfileError(f"{source}: command_ranges must have exactly {', '.join(COMMAND_AXES)}")
    low = np.array([float(ranges[a][0]) for a in COMMAND_AXES])
    high = np.array([float(ranges[a][1]) for a in COMMAND_AXES])
    if not np.all(low <= 0) or not np.all(high >= 0) or not np.all(low < high):
        raise ProfileError(f"{source}: each command range must be [low <= 0, high >= 0] with low < high")

    urdf = base_dir / str(raw["urdf"])
    if not urdf.is_file():
        raise ProfileError(f"{source}: urdf {urdf} not found")

    return RobotProfile(
        name=str(raw["name"]),
        urdf_path=urdf,
        base_link=str(raw["base_link"]),
        imu_link=str(raw["imu_link"]),
        mass=positive("mass", raw["mass"]),
        joints=joints,
        feet=tuple(str(f) for f in raw["feet"]),
        default_pose=default,
        lower_limits=lower,
        upper_limits=upper,
        kp=kp,
        kd=kd,
        kp_max=kp_max,
        kd_max=kd_max,
        torque_limit=positive("torque_limit", raw["torque_limit"]),
        velocity_limit=positive("velocity_limit", raw["velocity_limit"]),
        command_low=low,
        command_high=high,
        standing_height=positive("standing_height", raw["standing_height"]),
        tilt_limit=positive("tilt_limit", raw["tilt_limit"]),
        actuator=_actuator(raw.get("actuator", {}), positive),
        physics_dt=positive("simulation.physics_dt", raw.get("simulation", {}).get("physics_dt", DEFAULT_PHYSICS_DT)),
        extra={k: raw[k] for k in _OPTIONAL if k in raw and k not in ("actuator", "simulation")},
    )
