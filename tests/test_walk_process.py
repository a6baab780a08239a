"""pupper-walk as a subprocess, as a user runs it: an isolated ROS domain, a test node on the other end of DDS."""

import os
import signal
import subprocess
import sys
import time

import pytest
import rclpy
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty, String

from pupper_ros import resources
from tests.ros_helpers import RosHarness

WALK = [sys.executable, "-m", "pupper_ros.walk"]


def start(*args):
    return subprocess.Popen(WALK + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


@pytest.fixture
def ros():
    harness = RosHarness()
    yield harness
    harness.close()


class Watcher:
    def __init__(self, ros):
        self.node = ros.add(rclpy.create_node("walk_test", context=ros.context))
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.states, self.odom = [], []
        self.node.create_subscription(String, "/pupper_walk/state", lambda m: self.states.append(m.data), latched)
        self.node.create_subscription(Odometry, "/odom", self.odom.append, 50)
        self.cmd = self.node.create_publisher(Twist, "/cmd_vel", reliable)
        self.estop = self.node.create_publisher(Empty, "/emergency_stop", reliable)

    @property
    def state(self):
        return self.states[-1] if self.states else None


@pytest.mark.skipif(not resources.default_policy_path().is_file(), reason="no shipped policy in models/")
def test_walks_forward_on_cmd_vel_then_emergency_stop_damps_and_sigterm_exits_cleanly(ros):
    proc = start("--backend", "sim")
    try:
        watch = Watcher(ros)
        assert ros.spin_until(lambda: watch.state == "WALKING", timeout=30), (watch.states, proc.poll())
        forward = Twist()
        forward.linear.x = 0.3
        assert ros.spin_until(lambda: len(watch.odom) > 0, timeout=5)
        x0 = watch.odom[-1].pose.pose.position.x
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            watch.cmd.publish(forward)
            ros.spin_for(0.05)
        moved = watch.odom[-1].pose.pose.position.x - x0
        assert moved > 0.5, f"moved {moved:.2f} m in 4 s at 0.3 m/s"
        assert watch.state == "WALKING"
        watch.estop.publish(Empty())
        assert ros.spin_until(lambda: watch.state == "DAMPING", timeout=3)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=5)
        assert code == 0 and time.monotonic() - started < 1.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigint_sends_damping_and_exits_0_within_a_second(ros, tmp_path, profile):
    from tests.policies import standing_network, write_policy

    policy = write_policy(tmp_path / "stand.onnx", profile, standing_network())
    proc = start("--backend", "sim", "--policy", str(policy))
    try:
        watch = Watcher(ros)
        assert ros.spin_until(lambda: watch.state == "WALKING", timeout=30), (watch.states, proc.poll())
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        code = proc.wait(timeout=5)
        elapsed = time.monotonic() - started
        assert ros.spin_until(lambda: watch.state == "DAMPING", timeout=2)
        assert code == 0 and elapsed < 1.0, (code, elapsed, proc.stderr.read())
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
