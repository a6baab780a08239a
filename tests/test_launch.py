"""launch/walk.launch.py checked statically (launch and launch_ros are not installable from PyPI), and
config/walk.yaml checked against the parameters the node declares, by loading it into a real node."""

import ast
import configparser
import tomllib
from pathlib import Path

import rclpy
import yaml

from pupper_ros.node import NODE_NAME, WalkNode
from pupper_ros.parameters import PARAMETERS

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


def test_every_launch_argument_is_declared_and_every_parameter_it_sets_exists():
    tree = launch_tree()
    declared = {ast.literal_eval(c.args[0]) for c in calls(tree, "DeclareLaunchArgument")}
    used = {ast.literal_eval(c.args[0]) for c in calls(tree, "LaunchConfiguration")}
    assert used <= declared and declared == {"backend", "policy", "port", "engine", "gui", "record_log"}
    (node,) = calls(tree, "LifecycleNode")
    params = next(k.value for k in node.keywords if k.arg == "parameters")
    overrides = next(e for e in params.elts if isinstance(e, ast.Dict))
    names = {ast.literal_eval(k) for k in overrides.keys}
    assert names <= {p.name for p in PARAMETERS}


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
