"""In-process ROS 2 helpers for the node tests: a dedicated context, spinning until a condition holds."""

from __future__ import annotations

import subprocess
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty, String
from std_srvs.srv import Trigger


class RosHarness:
    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes = []

    def add(self, node):
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin_until(self, condition, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if condition():
                return True
        return False

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def close(self):
        for node in self.nodes:
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        rclpy.shutdown(context=self.context)


class WalkClient:
    """The other end of pupper_walk's interfaces: records ~/state, /odom and /diagnostics; publishes /cmd_vel and
    /emergency_stop; calls ~/clear_fault."""

    def __init__(self, ros: RosHarness, name: str = "walk_client"):
        self.ros = ros
        self.node = ros.add(rclpy.create_node(name, context=ros.context))
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.states, self.odom, self.diagnostics = [], [], []
        self.node.create_subscription(String, "/pupper_walk/state", lambda m: self.states.append(m.data), latched)
        self.node.create_subscription(Odometry, "/odom", self.odom.append, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.cmd = self.node.create_publisher(Twist, "/cmd_vel", reliable)
        self.estop = self.node.create_publisher(Empty, "/emergency_stop", reliable)
        self.clear = self.node.create_client(Trigger, "/pupper_walk/clear_fault")

    @property
    def state(self):
        return self.states[-1] if self.states else None

    def wait_state(self, value: str, timeout: float = 15.0) -> bool:
        return self.ros.spin_until(lambda: self.state == value, timeout)

    def clear_fault(self):
        assert self.clear.wait_for_service(timeout_sec=10)
        future = self.clear.call_async(Trigger.Request())
        assert self.ros.spin_until(future.done, 10)
        return future.result()

    def forward_velocity(self) -> float | None:
        """The true forward velocity of base_link in its own frame, from the simulator's /odom."""
        return self.odom[-1].twist.twist.linear.x if self.odom else None

    def drive(self, vx: float, seconds: float, measure=None, settle: float = 1.0) -> list[float]:
        """Publish vx on /cmd_vel for `seconds`; return what `measure()` read every 50 ms after the first `settle`
        seconds. A velocity read from the simulator is the robot's own speed whether or not the simulation kept up
        with the wall clock on a busy machine; a distance over wall-clock seconds is not."""
        twist = Twist()
        twist.linear.x = vx
        started = time.monotonic()
        samples = []
        while (elapsed := time.monotonic() - started) < seconds:
            self.cmd.publish(twist)
            self.ros.spin_for(0.05)
            if measure is not None and elapsed >= settle and (value := measure()) is not None:
                samples.append(value)
        return samples


def assert_walks_forward(watch: WalkClient, expected_speed: float, vx: float = 0.3, seconds: float = 4.0,
                         measure=None) -> float:
    """Drive forward and check the robot's true mean forward speed (from /odom, or `measure()`) against what the
    policy's evaluation measured."""
    speeds = watch.drive(vx, seconds, measure=measure or watch.forward_velocity)
    assert speeds, "no velocity reading while driving"
    speed = sum(speeds) / len(speeds)
    assert speed > 0.5 * expected_speed, (
        f"walked at {speed:.3f} m/s for {vx} m/s commanded; the policy's evaluation says {expected_speed:.3f} m/s")
    return speed


# A daemon that hangs on a signal fails this; how long a clean exit takes is a benchmark figure
# (benchmarks/runtime_latency.py), since a busy machine stretches it.
SHUTDOWN_DEADLINE_S = 10.0


def stop_process(proc, sig) -> int:
    """Send `sig` and return the exit code; a process still running after SHUTDOWN_DEADLINE_S is killed and fails."""
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=SHUTDOWN_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {SHUTDOWN_DEADLINE_S} s after signal {sig}") from None


# How long to wait for something that should happen at once. Passing tests never wait this long; a busy machine
# only makes them wait longer, never fail.
EVENTUALLY_S = 10.0


def wait_until(condition, timeout: float = EVENTUALLY_S) -> bool:
    """Poll ``condition`` (no ROS spinning) until it holds or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
