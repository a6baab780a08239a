"""launch/walk.launch.py checked statically (launch and launch_ros are not installable from PyPI), and
config/walk.yaml checked against the parameters the node declares, by loading it into a real node."""

import ast
import configparser
import shlex
import tomllib
from pathlib import Path

import pytest
import rclpy
import yaml

from pupper_ros.ros.node import NODE_NAME, WalkNode
from pupper_ros.parameters import PARAMETERS
from tests.launch_standin import node_arguments, run_launch_file

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "walk.launch.py"


def launch_tree():
    return ast.parse(LAUNCH.read_text())


def constants(tree) -> dict:
    return {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}


def calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def test_launch_names_this_package_its_executable_and_its_params_file():
    c = constants(launch_tree())
    package_xml = (ROOT / "package.xml").read_text()
    assert f"<name>{c['PACKAGE']}</name>" in package_xml
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert c["EXECUTABLE"] in scripts
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(ROOT / "setup.cfg")
    assert setup_cfg["install"]["install_scripts"] == f"$base/lib/{c['PACKAGE']}"  # where launch finds executables
    assert (ROOT / "config" / c["PARAMS_FILE"]).is_file()
    assert 'glob("config/*.yaml")' in (ROOT / "setup.py").read_text()
    assert c["NODE_NAME"] == NODE_NAME


def test_launch_starts_a_lifecycle_node_that_launch_activates():
    tree = launch_tree()
    (node,) = calls(tree, "LifecycleNode")
    keywords = {k.arg: k.value for k in node.keywords}
    assert ast.literal_eval(keywords["autostart"]) is True
    assert ast.literal_eval(keywords["arguments"]) == ["--no-autostart"]


def launched_parameters(arguments: dict, tmp_path) -> dict:
    """The pupper_walk node's parameter values when started by the launch file with ``arguments`` (through the
    launch stand-in, tests/launch_standin.py, and real rcl parameter parsing)."""
    (node,) = run_launch_file(LAUNCH, arguments)
    context = rclpy.Context()
    rclpy.init(args=["pupper-walk", *node_arguments(node, tmp_path)], context=context)
    try:
        walk = WalkNode(context=context)
        values = {p.name: walk.get_parameter(p.name).value for p in PARAMETERS}
        walk.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return values


# A params file that changes every parameter a launch argument can set: none may be overridden unasked.
CHANGED = {"backend": "serial", "robot": "pupper_v2", "policy": "/opt/policies/v2.onnx",
           "policies": "fast=/opt/policies/fast.onnx", "serial_port": "/dev/ttyUSB7",
           "sim_engine": "mujoco", "record_log": "/var/log/pupper/run.mcap", "sim_gui": True, "activate_controllers": True}
# And a value of each launch argument, different from both.
GIVEN = {"backend": "ros2_control", "robot": "pupper_v3", "policy": "/tmp/other.onnx", "policies": "",
         "port": "/dev/ttyACM3",
         "engine": "pybullet", "record_log": "", "gui": "false", "activate_controllers": "false"}


@pytest.fixture
def changed_params_file(tmp_path):
    data = yaml.safe_load((ROOT / "config" / "walk.yaml").read_text())
    data[NODE_NAME]["ros__parameters"].update(CHANGED)
    path = tmp_path / "my_walk.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def launch_arguments() -> dict[str, str]:
    """The launch file's ARGUMENTS: launch argument -> the node parameter it sets."""
    value = next(n.value for n in launch_tree().body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ARGUMENTS")
    return {argument: parameter for argument, (parameter, _) in ast.literal_eval(value).items()}


def test_every_launch_argument_sets_a_declared_parameter():
    assert set(launch_arguments().values()) == set(CHANGED) and set(launch_arguments()) == set(GIVEN)
    assert set(CHANGED) <= {p.name for p in PARAMETERS}


def test_the_params_file_holds_under_launch_when_no_argument_is_given(changed_params_file, tmp_path):
    """Finding 8 of the fail-closed review: the launch arguments' defaults always overrode config/walk.yaml."""
    values = launched_parameters({"params_file": str(changed_params_file)}, tmp_path)
    assert {name: values[name] for name in CHANGED} == CHANGED


@pytest.mark.parametrize("argument", sorted(GIVEN))
def test_a_launch_argument_given_overrides_the_params_file(changed_params_file, tmp_path, argument):
    from pupper_ros.parameters import parse_value

    parameter = launch_arguments()[argument]
    values = launched_parameters({"params_file": str(changed_params_file), argument: GIVEN[argument]}, tmp_path)
    assert values[parameter] == parse_value(parameter, GIVEN[argument])
    assert {n: values[n] for n in CHANGED if n != parameter} == {n: v for n, v in CHANGED.items() if n != parameter}


def test_the_default_params_file_is_the_packages_config(tmp_path):
    values = launched_parameters({}, tmp_path)
    expected = yaml.safe_load((ROOT / "config" / "walk.yaml").read_text())[NODE_NAME]["ros__parameters"]
    assert values == expected


@pytest.mark.parametrize("arguments, message", [
    ({"gui": "maybe"}, "parameter 'sim_gui' takes a bool, got 'maybe'"),
    ({"backend": "warp"}, "parameter 'backend' must be one of sim, serial, ros2_control, got 'warp'"),
    ({"robot_name": "pupper_v2"}, "not declared by walk.launch.py: robot_name"),
])
def test_a_bad_launch_argument_is_refused_naming_it(arguments, message):
    with pytest.raises(ValueError, match=message):
        run_launch_file(LAUNCH, arguments)


def test_walk_yaml_sets_exactly_the_declared_parameters():
    data = yaml.safe_load((ROOT / "config" / "walk.yaml").read_text())
    values = data[NODE_NAME]["ros__parameters"]
    assert set(values) == {p.name for p in PARAMETERS}
    for p in PARAMETERS:
        assert type(values[p.name]) is type(p.default), p.name


def test_walk_yaml_loads_into_the_node_through_rcl():
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(ROOT / "config" / "walk.yaml")], context=context)
    try:
        node = WalkNode(context=context)
        expected = yaml.safe_load((ROOT / "config" / "walk.yaml").read_text())[NODE_NAME]["ros__parameters"]
        for name, value in expected.items():
            assert node.get_parameter(name).value == value, name
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


UNITS = {"pupper-walk-v2.service": ("serial", "pupper_v2"), "pupper-walk-v3.service": ("ros2_control", "pupper_v3")}


def unit_launch_arguments(unit: str) -> dict[str, str]:
    """The ``name:=value`` arguments of the ``ros2 launch pupper_ros walk.launch.py`` in a unit's ExecStart."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(ROOT / "deploy" / unit)
    command = parser["Service"]["ExecStart"]
    words = shlex.split(command.split("exec ", 1)[1].rstrip("'"))
    assert words[:4] == ["ros2", "launch", "pupper_ros", LAUNCH.name], words
    return dict(word.split(":=", 1) for word in words[4:])


def test_deploy_holds_a_unit_per_robot_and_nothing_else():
    assert sorted(p.name for p in (ROOT / "deploy").iterdir()) == sorted(UNITS)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_each_units_command_line_launches_its_robot_on_its_backend(unit, tmp_path):
    """Finding 1 of the fail-closed review: the one unit ran a Pupper v2's Teensy with Pupper v3's profile."""
    backend, robot = UNITS[unit]
    values = launched_parameters(unit_launch_arguments(unit), tmp_path)
    assert (values["backend"], values["robot"]) == (backend, robot)
    from pupper_ros.robot_profile import load_robot_profile

    assert load_robot_profile(values["robot"]).name == robot


def test_each_unit_says_what_it_waits_for_and_how_it_stops():
    for unit in UNITS:
        text = (ROOT / "deploy" / unit).read_text()
        assert "# Waits for:" in text and "# Stops:" in text and "KillSignal=SIGTERM" in text, unit
    v3 = configparser.ConfigParser(strict=False, interpolation=None)
    v3.read(ROOT / "deploy" / "pupper-walk-v3.service")
    assert "robot.service" in v3["Unit"]["After"] and "robot.service" in v3["Unit"]["Requires"]
    assert unit_launch_arguments("pupper-walk-v3.service")["activate_controllers"] == "true"


def test_the_daemons_reference_lists_every_declared_parameter_in_one_generated_table():
    """The README listed 19 of the 27 parameters; the table in docs/daemon.md is `python -m pupper_ros.parameters`'s
    output."""
    from pupper_ros.parameters import markdown_table

    assert markdown_table() in (ROOT / "docs" / "daemon.md").read_text()
