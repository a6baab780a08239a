"""Test stand-in for ROS 2 launch (``launch`` and ``launch_ros`` are not installable here): just enough of both to run
``launch/walk.launch.py``'s own ``generate_launch_description`` with command-line arguments and turn the node it
describes into the command line launch_ros would start it with.

Used as ``nodes = run_launch_file(LAUNCH, {"robot": "pupper_v2"})`` and ``node_arguments(node, tmp_path)``; the
package's share directory is the checkout (its config/ is what a colcon install puts in share/pupper_ros/config/).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from unittest import mock

import yaml

ROOT = Path(__file__).resolve().parents[1]


class LaunchContext:
    def __init__(self, configurations: dict[str, str]):
        self.launch_configurations = configurations


class DeclareLaunchArgument:
    def __init__(self, name: str, default_value: str | None = None, description: str = ""):
        self.name, self.default_value, self.description = name, default_value, description


class LaunchConfiguration:
    def __init__(self, name: str):
        self.name = name

    def perform(self, context: LaunchContext) -> str:
        return context.launch_configurations[self.name]


class OpaqueFunction:
    def __init__(self, function):
        self.function = function


class LaunchDescription:
    def __init__(self, entities):
        self.entities = list(entities)


class LifecycleNode:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.name = kwargs["name"]
        self.arguments = list(kwargs.get("arguments", []))
        self.parameters = list(kwargs.get("parameters", []))


def _fake_modules() -> dict[str, types.ModuleType]:
    modules = {name: types.ModuleType(name) for name in
               ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions")}
    modules["launch"].LaunchDescription = LaunchDescription
    modules["launch.actions"].DeclareLaunchArgument = DeclareLaunchArgument
    modules["launch.actions"].OpaqueFunction = OpaqueFunction
    modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    modules["launch_ros.actions"].LifecycleNode = LifecycleNode
    return modules


def run_launch_file(path: Path, arguments: dict[str, str]) -> list[LifecycleNode]:
    """The nodes ``ros2 launch PACKAGE FILE name:=value ...`` would start. An argument the file does not declare, or
    a declared one without a default that is not given, raises ValueError (ros2 launch refuses both)."""
    with mock.patch.dict(sys.modules, _fake_modules()), \
            mock.patch("ament_index_python.packages.get_package_share_directory", return_value=str(ROOT)):
        spec = importlib.util.spec_from_file_location("launch_file_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        declared = {e.name: e.default_value for e in description.entities if isinstance(e, DeclareLaunchArgument)}
        unknown = sorted(set(arguments) - set(declared))
        if unknown:
            raise ValueError(f"launch argument(s) not declared by {path.name}: {', '.join(unknown)}")
        values = {name: arguments.get(name, default) for name, default in declared.items()}
        missing = [name for name, value in values.items() if value is None]
        if missing:
            raise ValueError(f"launch argument(s) required: {', '.join(missing)}")
        context = LaunchContext(values)
        nodes = []
        for entity in description.entities:
            if isinstance(entity, OpaqueFunction):
                nodes.extend(entity.function(context))
            elif isinstance(entity, LifecycleNode):
                nodes.append(entity)
        return nodes


def node_arguments(node: LifecycleNode, tmp_path: Path) -> list[str]:
    """The node's command line after its executable, as launch_ros builds it: its arguments, then ROS arguments with
    the node's name and each parameter source (a file, or a dictionary written to a file) in order."""
    args = [*node.arguments, "--ros-args", "-r", f"__node:={node.name}"]
    for k, source in enumerate(node.parameters):
        if isinstance(source, dict):
            path = tmp_path / f"launch_params_{k}.yaml"
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": source}}))
            source = path
        args += ["--params-file", str(source)]
    return args
