"""In-process ROS 2 helpers for the node tests: a dedicated context, spinning until a condition holds."""

from __future__ import annotations

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
        assert self.clear.wait_for_service(timeout_sec=5)
        future = self.clear.call_async(Trigger.Request())
        assert self.ros.spin_until(future.done, 5)
        return future.result()

    def drive(self, vx: float, seconds: float) -> None:
        twist = Twist()
        twist.linear.x = vx
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.cmd.publish(twist)
            self.ros.spin_for(0.05)
