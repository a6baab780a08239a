"""Start the pupper_walk daemon: `ros2 launch pupper_ros walk.launch.py [backend:=serial port:=/dev/ttyACM0]`
(or `engine:=mujoco` for the simulated robot in MuJoCo).

The node is a managed (lifecycle) node; launch configures and activates it (autostart), so the executable runs with
--no-autostart. Parameters come from config/walk.yaml; the launch arguments below override it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "pupper_ros"
EXECUTABLE = "pupper-walk"
NODE_NAME = "pupper_walk"
PARAMS_FILE = "walk.yaml"


def generate_launch_description():
    params_file = os.path.join(get_package_share_directory(PACKAGE), "config", PARAMS_FILE)
    arguments = [
        DeclareLaunchArgument("backend", default_value="sim", description="robot link: sim, serial or ros2_control"),
        DeclareLaunchArgument("policy", default_value="", description="ONNX policy file (empty: the shipped policy)"),
        DeclareLaunchArgument("port", default_value="/dev/ttyACM0", description="serial device of the motor controller"),
        DeclareLaunchArgument("engine", default_value="pybullet", description="sim backend: pybullet or mujoco"),
        DeclareLaunchArgument("record_log", default_value="", description="flight recorder: MCAP file (empty: off)"),
        DeclareLaunchArgument("gui", default_value="false", description="sim backend: open a PyBullet window"),
    ]
    node = LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace="",
        output="screen",
        arguments=["--no-autostart"],
        autostart=True,
        parameters=[
            params_file,
            {
                "backend": LaunchConfiguration("backend"),
                "policy": LaunchConfiguration("policy"),
                "serial_port": LaunchConfiguration("port"),
                "sim_engine": LaunchConfiguration("engine"),
                "record_log": LaunchConfiguration("record_log"),
                "sim_gui": ParameterValue(LaunchConfiguration("gui"), value_type=bool),
            },
        ],
    )
    return LaunchDescription(arguments + [node])
