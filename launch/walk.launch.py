"""Start the pupper_walk daemon: `ros2 launch pupper_ros walk.launch.py [robot:=pupper_v2] [backend:=serial
port:=/dev/ttyACM0]` (or `engine:=mujoco` for the simulated robot in MuJoCo).

The node is a managed (lifecycle) node; launch configures and activates it (autostart), so the executable runs with
--no-autostart. Parameters come from `params_file` (default: the package's config/walk.yaml). A launch argument given
on the command line overrides the file's value; one left out leaves the file's value in force (its default,
FROM_PARAMS_FILE, means exactly that).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from pupper_ros.parameters import parse_value

PACKAGE = "pupper_ros"
EXECUTABLE = "pupper-walk"
NODE_NAME = "pupper_walk"
PARAMS_FILE = "walk.yaml"
FROM_PARAMS_FILE = "(from params_file)"

# launch argument -> (node parameter it sets, description)
ARGUMENTS = {
    "backend": ("backend", "robot link: sim, serial or ros2_control"),
    "robot": ("robot", "robot profile: pupper_v3, pupper_v2 or a profile YAML"),
    "policy": ("policy", "ONNX policy file (empty: the robot's shipped policy)"),
    "policies": ("policies", "more policies for ~/select_policy: 'name=file.onnx, name=file.onnx'"),
    "port": ("serial_port", "serial device of the motor controller"),
    "engine": ("sim_engine", "sim backend: pybullet or mujoco"),
    "record_log": ("record_log", "flight recorder: MCAP file (empty: off)"),
    "gui": ("sim_gui", "sim backend: open a PyBullet window (true/false)"),
    "activate_controllers": ("activate_controllers", "ros2_control backend: switch the forward controllers on at "
                             "configure (true/false)"),
}


def walk_node(context):
    """The node, with the params file and only the launch arguments that were given."""
    overrides = {}
    for argument, (parameter, _) in ARGUMENTS.items():
        text = LaunchConfiguration(argument).perform(context)
        if text != FROM_PARAMS_FILE:
            overrides[parameter] = parse_value(parameter, text)
    params_file = LaunchConfiguration("params_file").perform(context)
    return [LifecycleNode(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace="",
        output="screen",
        arguments=["--no-autostart"],
        autostart=True,
        parameters=[params_file, overrides] if overrides else [params_file],
    )]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", PARAMS_FILE)
    arguments = [DeclareLaunchArgument("params_file", default_value=default_params,
                                       description="the node's parameters (a YAML file like config/walk.yaml)")]
    arguments += [DeclareLaunchArgument(name, default_value=FROM_PARAMS_FILE, description=f"{description}; "
                                        "left out: the params file's value")
                  for name, (_, description) in ARGUMENTS.items()]
    return LaunchDescription(arguments + [OpaqueFunction(function=walk_node)])
