"""pupper-walk as a subprocess, as a user runs it: an isolated ROS domain, a test node on the other end of DDS."""

import os
import signal
import subprocess
import sys

import pytest
from std_msgs.msg import Empty

from tests.ros_helpers import WalkClient, assert_walks_forward, stop_process
from tests.shipped import forward_speed_0_3

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

WALK = [sys.executable, "-m", "pupper_ros.ros.walk"]


def start(*args):
    return subprocess.Popen(WALK + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def test_walks_forward_on_cmd_vel_then_emergency_stop_damps_and_sigterm_exits_cleanly(ros):
    proc = start("--backend", "sim")
    try:
        watch = WalkClient(ros)
        assert ros.spin_until(lambda: watch.state == "WALKING", timeout=30), (watch.states, proc.poll())
        assert_walks_forward(watch, forward_speed_0_3())
        assert watch.state == "WALKING"
        watch.estop.publish(Empty())
        assert ros.spin_until(lambda: watch.state == "DAMPING", timeout=10)
        assert stop_process(proc, signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_walks_forward_in_mujoco(ros):
    """The same daemon over the second engine (`--engine mujoco`, parameter sim_engine)."""
    proc = start("--backend", "sim", "--engine", "mujoco")
    try:
        watch = WalkClient(ros)
        assert ros.spin_until(lambda: watch.state == "WALKING", timeout=30), (watch.states, proc.poll())
        assert_walks_forward(watch, forward_speed_0_3())
        assert stop_process(proc, signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP (an SSH session that dropped)"])
def test_a_stop_signal_sends_damping_and_exits_0(ros, tmp_path, profile, sig):
    from tests.policies import standing_network, write_policy

    policy = write_policy(tmp_path / "stand.onnx", profile, standing_network())
    proc = start("--backend", "sim", "--policy", str(policy))
    try:
        watch = WalkClient(ros)
        assert ros.spin_until(lambda: watch.state == "WALKING", timeout=30), (watch.states, proc.poll())
        code = stop_process(proc, sig)
        assert ros.spin_until(lambda: watch.state == "DAMPING", timeout=10)  # published before the process ended
        assert code == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ros-args", "-p", "backend:=warp"], "parameter 'backend': unknown backend 'warp'"),
        (["--policy", "/nonexistent/model.onnx"], "parameter 'policy': policy /nonexistent/model.onnx: file not found"),
        (["--ros-args", "-p", "control_rate:=-5.0"], "control_rate"),
        (["--ros-args", "-p", "sim_engine:=warp"], "parameter 'sim_engine': unknown engine 'warp'; choose one of pybullet, mujoco"),
    ],
)
def test_bad_configuration_exits_non_zero_with_a_message_not_a_traceback(args, message):
    result = subprocess.run(WALK + args, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_every_parameter():
    from pupper_ros.parameters import PARAMETERS

    result = subprocess.run(WALK + ["--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for p in PARAMETERS:
        assert p.name in result.stdout


def test_without_odometry_the_demo_plays_its_script_unmeasured_and_says_so(ros):
    """A robot has no ground truth on /odom: the demo must not wait for it forever (DemoDriver in-process, a short script)."""
    import rclpy
    from geometry_msgs.msg import Twist
    from std_msgs.msg import String

    from pupper_ros.ros.demo import DemoDriver
    from pupper_ros.ros.interfaces import state_qos

    script = (("forward", 0.5, (0.3, 0.0, 0.0)), ("stop", 0.5, (0.0, 0.0, 0.0)))
    demo = ros.add(DemoDriver(script=script, odom_topic="/no_odometry_here", context=ros.context))
    robot = ros.add(rclpy.create_node("fake_walk_state", context=ros.context))
    robot.create_publisher(String, "/pupper_walk/state", state_qos()).publish(String(data="WALKING"))
    commands = []
    robot.create_subscription(Twist, "/cmd_vel", lambda m: commands.append(m.linear.x), 10)
    assert ros.spin_until(lambda: demo.done, timeout=30)
    assert not demo.failed
    assert 0.3 in commands and commands[-1] == 0.0
    table = demo.table()
    assert "not measured: no nav_msgs/Odometry arrived on /no_odometry_here" in table
    assert "forward" in table and "nan" in table
