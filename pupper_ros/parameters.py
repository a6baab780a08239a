"""The walking daemon's parameters: name, type, default, range and description, in one table.

The ROS node declares them from here, ``pupper-walk --help`` lists them from here, and a test checks that
``config/walk.yaml`` sets exactly these. Zero for a limit means "the robot profile's value".
"""

from __future__ import annotations

from dataclasses import dataclass

from pupper_ros.robot_profile import RobotProfile
from pupper_ros.safety import SafetyLimits, joint_speed_limit


NODE_NAME = "pupper_walk"  # the daemon's node; its private topics are /pupper_walk/...


class ParameterError(ValueError):
    """A parameter value the runtime cannot be built with; the message names the parameter."""

    def __init__(self, name: str, problem: str, message: str = ""):
        self.name = name
        super().__init__(message or f"parameter '{name}': {problem}")


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None


PARAMETERS = (
    Param("backend", "sim", "robot link: 'sim' (simulated), 'serial' (Teensy over USB) or 'ros2_control' (Pupper v3's stack)",
          choices=("sim", "serial", "ros2_control")),
    Param("robot", "pupper_v3", "robot profile name (pupper_ros/robots/<robot>.yaml) or a path to a profile YAML"),
    Param("policy", "", "ONNX policy file; empty = the shipped policy for the robot. Named 'default' by ~/select_policy"),
    Param("policies", "", "more policies to switch to with ~/select_policy, as 'name=file.onnx, name=file.onnx'; each "
          "is loaded and checked at configure"),
    Param("control_rate", 0.0, "control loop rate in Hz; 0 = the policy's own rate; a multiple of it runs the policy every k-th tick", 0.0, 1000.0),
    Param("command_timeout", SafetyLimits.command_timeout, "s without /cmd_vel before the command ramps to zero", 0.01, 10.0),
    Param("soft_start_duration", SafetyLimits.soft_start_duration, "s to move from the measured pose to the default pose on activation", 0.1, 10.0),
    Param("fade_in_duration", SafetyLimits.fade_in_duration, "s to blend the policy in after the soft start", 0.0, 10.0),
    Param("sensor_timeout", SafetyLimits.sensor_timeout, "s of sensor silence that faults to DAMPING", 0.005, 5.0),
    Param("tilt_limit", 0.0, "rad of body tilt that counts as a fall; 0 = the robot profile's", 0.0, 1.5708),
    Param("damping_kd", SafetyLimits.damping_kd, "Nm s/rad applied in DAMPING (kp is 0)", 0.0, 1.0),
    Param("joint_limit_margin", SafetyLimits.joint_limit_margin, "rad kept clear of every joint position limit", 0.0, 0.5),
    Param("max_joint_speed", 0.0, "rad/s a joint target may move; 0 = the robot's own: where one tick's step asks for its torque limit, capped by its velocity limit", 0.0, 100.0),
    Param("max_consecutive_overruns", SafetyLimits.max_consecutive_overruns, "control ticks in a row that may overrun before DAMPING", 1, 1000),
    Param("watchdog_timeout", SafetyLimits.watchdog_timeout, "s without a completed control tick before a watchdog "
          "outside the control thread latches DAMPING and sends damping itself", 0.01, 5.0),
    Param("stamped_cmd_vel", False, "subscribe /cmd_vel as geometry_msgs/TwistStamped instead of Twist"),
    Param("publish_rate", 50.0, "Hz for /joint_states, /imu/data, ~/joint_commands and /odom", 1.0, 500.0),
    Param("serial_port", "/dev/ttyACM0", "serial backend: device of the motor controller"),
    Param("serial_baud", 500000, "serial backend: baud rate (nominal over USB CDC)", 9600, 10000000),
    Param("joint_states_topic", "/joint_states", "ros2_control backend: joint_state_broadcaster's topic"),
    Param("imu_topic", "/imu_sensor_broadcaster/imu", "ros2_control backend: imu_sensor_broadcaster's topic"),
    Param("position_controller", "forward_position_controller", "ros2_control backend: forward controller of joint positions"),
    Param("kp_controller", "forward_kp_controller", "ros2_control backend: forward controller of joint kp"),
    Param("kd_controller", "forward_kd_controller", "ros2_control backend: forward controller of joint kd"),
    Param("activate_controllers", False, "ros2_control backend: at configure, ask controller_manager to activate the "
          "three forward controllers and deactivate neural_controller (needs controller_manager_msgs)"),
    Param("controller_manager_timeout", 5.0, "ros2_control backend: s configure waits for each answer of "
          "controller_manager and the controllers, and for the first joint states and IMU message", 0.5, 120.0),
    Param("record_log", "", "flight recorder: MCAP file every control tick is written to (extra 'record'); empty = off"),
    Param("sim_engine", "pybullet", "sim backend: physics engine, 'pybullet' or 'mujoco' (extra 'mujoco')",
          choices=("pybullet", "mujoco")),
    Param("sim_gui", False, "sim backend: open a PyBullet window"),
    Param("sim_realtime", True, "sim backend: pace on the wall clock; false = lock-step, as fast as possible"),
)

BY_NAME = {p.name: p for p in PARAMETERS}


def markdown_table() -> str:
    """The parameter table in docs/daemon.md (a test keeps the two equal): ``python -m pupper_ros.parameters``."""
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for p in PARAMETERS:
        default = "true" if p.default is True else "false" if p.default is False else repr(p.default).replace("'", '"')
        limits = f" (range {p.low:g} to {p.high:g})" if p.low is not None else ""
        rows.append(f"| `{p.name}` | `{default}` | {p.description.replace('|', '/')}{limits} |")
    return "\n".join(rows)


FIRST_POLICY = "default"  # the name ~/select_policy gives the 'policy' parameter's file


def policy_entries(text: str) -> list[tuple[str, str]]:
    """The 'policies' parameter's (name, file) pairs; ValueError naming a malformed entry."""
    entries, names = [], {FIRST_POLICY}
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        name, sep, path = (x.strip() for x in raw.partition("="))
        if not sep or not name or not path:
            raise ValueError(f"entry {raw!r} is not 'name=file.onnx'")
        if name in names:
            raise ValueError(f"policy name '{name}' is used twice ('{FIRST_POLICY}' is the 'policy' parameter's)")
        names.add(name)
        entries.append((name, path))
    return entries


def parse_value(name: str, text: str):
    """A parameter's value from text (a launch argument), of the parameter's declared type; ValueError names it."""
    param = BY_NAME[name]
    kind = type(param.default)
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):
                raise ValueError
            value = lowered == "true"
        else:
            value = kind(text)
    except ValueError:
        raise ValueError(f"parameter '{name}' takes a {kind.__name__}, got {text!r}") from None
    if param.choices and value not in param.choices:
        raise ValueError(f"parameter '{name}' must be one of {', '.join(param.choices)}, got {text!r}")
    return value


def safety_limits(values, profile: RobotProfile, control_period: float) -> SafetyLimits:
    """The supervisor's limits from parameter values (a mapping name -> value, as the node holds them or a flight
    log's header recorded them); zero limits take the profile's. Raises ValueError naming a bad value."""
    return SafetyLimits(
        control_period=control_period,
        command_timeout=values["command_timeout"],
        soft_start_duration=values["soft_start_duration"],
        fade_in_duration=values["fade_in_duration"],
        sensor_timeout=values["sensor_timeout"],
        tilt_limit=values["tilt_limit"] or profile.tilt_limit,
        damping_kd=values["damping_kd"],
        joint_limit_margin=values["joint_limit_margin"],
        max_joint_speed=joint_speed_limit(profile, control_period, values["max_joint_speed"]),
        max_consecutive_overruns=values["max_consecutive_overruns"],
        watchdog_timeout=values["watchdog_timeout"],
    )


if __name__ == "__main__":
    print(markdown_table())
