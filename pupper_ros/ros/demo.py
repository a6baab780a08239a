"""The built-in demo: a command script sent over /cmd_vel, measured on an odometry topic, summarised as a table.

The sim backend publishes its ground truth on /odom. A robot has no ground truth: with no odometry on the topic
the demo still plays its script once the robot walks, and the table says it was not measured."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from pupper_ros.ros.interfaces import state_qos

SETTLE_SECONDS = 1.0  # the start of each segment is acceleration, not tracking
ODOMETRY_WAIT_SECONDS = 3.0  # after WALKING, how long to wait for a first odometry message before playing unmeasured
WALKING_WAIT_SECONDS = 30.0


@dataclass
class Segment:
    name: str
    seconds: float
    command: tuple
    samples: list = field(default_factory=list)  # (vx, vy, yaw rate) body frame, after settling
    start: np.ndarray | None = None
    end: np.ndarray | None = None


class DemoDriver(Node):
    """Waits for WALKING, then plays ``script`` (``pupper_ros.command_suite.demo_script``: the robot's own command
    ranges) on /cmd_vel at 20 Hz and records ``odom_topic``."""

    def __init__(self, script, walk_node_name: str = "pupper_walk", odom_topic: str = "/odom", context=None):
        super().__init__("pupper_demo", context=context)
        self.segments = [Segment(n, s, c) for n, s, c in script]
        self.cmd_pub = self.create_publisher(Twist, "/cmd_vel", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(String, f"/{walk_node_name}/state", self._on_state, state_qos())
        self.odom_topic = odom_topic
        self.create_subscription(Odometry, odom_topic, self._on_odom, 50)
        self.timer = self.create_timer(0.05, self._on_timer)
        self.state = "INACTIVE"
        self.states_seen: list[str] = []
        self.index = -1
        self.segment_started = 0.0
        self.done = False
        self.failed = ""
        self.pose = None
        self.waited = 0.0
        self.waited_walking = 0.0

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_state(self, msg: String) -> None:
        self.state = msg.data
        self.states_seen.append(msg.data)
        if msg.data == "DAMPING" and self.index >= 0 and not self.done:
            self.failed = "the robot went to DAMPING during the demo"
            self.done = True

    def _on_odom(self, msg: Odometry) -> None:
        p = msg.pose.pose.position
        self.pose = np.array([p.x, p.y, p.z])
        if 0 <= self.index < len(self.segments) and self._now() - self.segment_started >= SETTLE_SECONDS:
            t = msg.twist.twist
            self.segments[self.index].samples.append((t.linear.x, t.linear.y, t.angular.z))

    def _on_timer(self) -> None:
        if self.done:
            return
        now = self._now()
        if self.index < 0:
            self.waited += 0.05
            if self.state == "WALKING":
                self.waited_walking += 0.05
                if self.pose is not None or self.waited_walking >= ODOMETRY_WAIT_SECONDS:
                    self._begin(0, now)
            elif self.waited > WALKING_WAIT_SECONDS:
                self.failed, self.done = f"robot never reached WALKING (state {self.state})", True
            return
        segment = self.segments[self.index]
        if now - self.segment_started >= segment.seconds:
            segment.end = self._pose()
            if self.index + 1 == len(self.segments):
                self.cmd_pub.publish(Twist())
                self.done = True
                return
            self._begin(self.index + 1, now)
            segment = self.segments[self.index]
        twist = Twist()
        twist.linear.x, twist.linear.y, twist.angular.z = segment.command
        self.cmd_pub.publish(twist)

    def _begin(self, index: int, now: float) -> None:
        self.index = index
        self.segment_started = now
        self.segments[index].start = self._pose()
        self.get_logger().info(f"demo: {self.segments[index].name} {self.segments[index].command}")

    def _pose(self) -> np.ndarray:
        return self.pose.copy() if self.pose is not None else np.full(3, math.nan)

    def table(self) -> str:
        lines = [f"{'segment':10s} {'commanded vx vy yaw':>21s}   {'measured vx vy yaw':>21s}   {'distance m':>10s}"]
        for s in self.segments:
            if s.start is None:
                continue
            measured = np.mean(s.samples, axis=0) if s.samples else np.full(3, math.nan)
            end = s.end if s.end is not None else s.start
            distance = float(np.linalg.norm(end[:2] - s.start[:2]))
            lines.append(f"{s.name:10s} {s.command[0]:6.2f} {s.command[1]:6.2f} {s.command[2]:6.2f}   "
                         f"{measured[0]:6.2f} {measured[1]:6.2f} {measured[2]:6.2f}   {distance:10.2f}")
        if self.index >= 0 and not any(s.samples for s in self.segments):
            lines.append(f"not measured: no nav_msgs/Odometry arrived on {self.odom_topic} (the sim backend publishes "
                         "/odom; for a robot, pass an odometry topic with --demo-odom)")
        return "\n".join(lines)
