"""What a flight log holds, shared by the recorder, its writer process and the reader: the topics and their message
types, the kinds of frame the daemon sends its writer, and the header's format."""

from __future__ import annotations

import struct
from enum import IntEnum

from pupper_ros.parameters import NODE_NAME

HEADER_FORMAT = "pupper_ros flight log 1"
MCAP_MAGIC = b"\x89MCAP0\r\n"

HEADER_TOPIC = "/pupper_ros/header"
JOINT_STATES, IMU, JOINT_COMMANDS, CMD_VEL, STATE, DIAGNOSTICS, OBSERVATION, ACTION = (
    "/joint_states", "/imu/data", f"/{NODE_NAME}/joint_commands", "/cmd_vel", f"/{NODE_NAME}/state", "/diagnostics",
    f"/{NODE_NAME}/policy/observation", f"/{NODE_NAME}/policy/action")

TOPICS = {"joint_states": JOINT_STATES, "imu": IMU, "joint_commands": JOINT_COMMANDS, "cmd_vel": CMD_VEL,
          "state": STATE, "diagnostics": DIAGNOSTICS, "observation": OBSERVATION, "action": ACTION, "header": HEADER_TOPIC}

MESSAGE_TYPES = {
    JOINT_STATES: "sensor_msgs/msg/JointState",
    IMU: "sensor_msgs/msg/Imu",
    JOINT_COMMANDS: "sensor_msgs/msg/JointState",
    CMD_VEL: "geometry_msgs/msg/Twist",
    STATE: "std_msgs/msg/String",
    DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
    OBSERVATION: "std_msgs/msg/Float32MultiArray",
    ACTION: "std_msgs/msg/Float32MultiArray",
    HEADER_TOPIC: "std_msgs/msg/String",
}


class Frame(IntEnum):
    """The kind of a frame the daemon sends its writer process (each becomes messages on one or more topics)."""

    CONFIG = 0  # JSON: the header, joint names, label layouts and message definitions; the first frame
    SAMPLE = 1  # a tick's sensor sample -> JOINT_STATES, IMU
    COMMAND = 2  # a tick's command -> JOINT_COMMANDS
    POLICY = 3  # a policy step's observation and action -> OBSERVATION, ACTION
    CMD_VEL = 4  # a /cmd_vel message as received -> CMD_VEL
    STATE = 5  # a state transition -> STATE
    DIAGNOSTICS = 6  # a /diagnostics message as published -> DIAGNOSTICS


FRAME_HEAD = struct.Struct("<IBd")  # length of what follows the length field, then kind and tick time
BODY_HEAD = struct.Struct("<Bd")
