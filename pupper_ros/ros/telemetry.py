"""What the daemon publishes about itself: the measured sensors, the commands sent, ground truth in simulation, and
/diagnostics. The control thread leaves a snapshot (``Telemetry``) under a lock held for microseconds; the node's
timers publish it (``TelemetryPublisher``), never waiting on the loop."""

from __future__ import annotations

import math
import threading

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Imu, JointState

from pupper_ros.backends.io import JointCommand
from pupper_ros.controller import Controller
from pupper_ros.parameters import NODE_NAME
from pupper_ros.rotations import rotation_matrix
from pupper_ros.safety import State


def odometry_message(stamp, child_frame: str, position, orientation, linear_body, angular_body) -> Odometry:
    """Ground truth as nav_msgs/Odometry: pose in ``odom``, twist in the child frame (REP 105)."""
    odom = Odometry()
    odom.header.stamp = stamp
    odom.header.frame_id = "odom"
    odom.child_frame_id = child_frame
    p, o = odom.pose.pose.position, odom.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in position)
    o.x, o.y, o.z, o.w = (float(v) for v in orientation)
    t = odom.twist.twist
    t.linear.x, t.linear.y, t.linear.z = (float(v) for v in linear_body)
    t.angular.x, t.angular.y, t.angular.z = (float(v) for v in angular_body)
    return odom


class Telemetry:
    """What the control thread leaves for the publishers: copied under a lock held for microseconds."""

    def __init__(self, n: int):
        self.lock = threading.Lock()
        self.stamp = 0.0
        self.joint_position = np.zeros(n)
        self.joint_velocity = np.zeros(n)
        self.orientation = np.array([0.0, 0.0, 0.0, 1.0])
        self.angular_velocity = np.zeros(3)
        self.linear_acceleration = np.zeros(3)
        self.command = JointCommand(n)
        self.truth = None  # (position, orientation, linear velocity world, angular velocity world)
        self.sample_age = math.nan
        self.valid = False

    def capture(self, now: float, controller: Controller) -> None:
        sample = controller.sample
        truth = controller.backend.ground_truth()
        with self.lock:
            self.stamp = now
            if sample is not None:
                self.joint_position[:] = sample.joint_position
                self.joint_velocity[:] = sample.joint_velocity
                self.orientation[:] = sample.orientation
                self.angular_velocity[:] = sample.angular_velocity
                if sample.linear_acceleration is not None:
                    self.linear_acceleration[:] = sample.linear_acceleration
                self.sample_age = now - sample.stamp
                self.valid = True
            self.command.copy_from(controller.command)
            self.truth = truth


class TelemetryPublisher:
    """The node's telemetry and diagnostics publishers for one configured runtime; ``destroy`` at teardown."""

    def __init__(self, node, profile, backend):
        self.node, self.profile = node, profile
        self.telemetry = Telemetry(profile.num_joints)
        self._joint_names = list(profile.joints)
        sensor = qos_profile_sensor_data
        # Under ros2_control the broadcasters publish the robot's joint states and IMU; the node does not echo them.
        echo = backend.publishes_sensors
        self.joint_state_pub = node.create_publisher(JointState, "/joint_states", sensor) if echo else None
        self.imu_pub = node.create_publisher(Imu, "/imu/data", sensor) if echo else None
        self.joint_command_pub = node.create_publisher(JointState, "~/joint_commands", sensor)
        self.odom_pub = node.create_publisher(Odometry, "/odom", 10) if backend.ground_truth() is not None else None
        self.diagnostics_pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def destroy(self) -> None:
        for pub in (self.joint_state_pub, self.imu_pub, self.joint_command_pub, self.odom_pub, self.diagnostics_pub):
            if pub is not None:
                self.node.destroy_publisher(pub)

    def publish_telemetry(self) -> None:
        telemetry = self.telemetry
        stamp = self.node.get_clock().now().to_msg()
        with telemetry.lock:
            if not telemetry.valid:
                return
            joints = JointState()
            joints.header.stamp = stamp
            joints.name = self._joint_names
            joints.position = telemetry.joint_position.tolist()
            joints.velocity = telemetry.joint_velocity.tolist()
            commands = JointState()
            commands.header.stamp = stamp
            commands.name = self._joint_names
            commands.position = telemetry.command.position.tolist()
            commands.effort = []  # targets, not torques; gains are in /diagnostics
            imu = Imu()
            imu.header.stamp = stamp
            imu.header.frame_id = self.profile.imu_link
            x, y, z, w = telemetry.orientation.tolist()
            imu.orientation.x, imu.orientation.y, imu.orientation.z, imu.orientation.w = x, y, z, w
            av, la = telemetry.angular_velocity, telemetry.linear_acceleration
            imu.angular_velocity.x, imu.angular_velocity.y, imu.angular_velocity.z = av.tolist()
            imu.linear_acceleration.x, imu.linear_acceleration.y, imu.linear_acceleration.z = la.tolist()
            truth = telemetry.truth
        if self.joint_state_pub is not None:
            self.joint_state_pub.publish(joints)
        self.joint_command_pub.publish(commands)
        if self.imu_pub is not None:
            self.imu_pub.publish(imu)
        if self.odom_pub is not None and truth is not None:
            position, orientation, linear, angular = truth
            rot = rotation_matrix(orientation)
            self.odom_pub.publish(odometry_message(stamp, self.profile.base_link, position, orientation,
                                                   rot.T @ linear, rot.T @ angular))

    def publish_diagnostics(self, controller: Controller, loop, *, policy_name: str, command_age: float,
                            cmd_vel_problem: str, cmd_vel_type: str, recorder=None) -> None:
        """One /diagnostics message (and, recording, the same in the flight log)."""
        stats = loop.stats.summary()
        supervisor, telemetry = controller.supervisor, self.telemetry
        state = controller.state
        level, message = DiagnosticStatus.OK, state.value
        if state == State.DAMPING and supervisor.fault_reason:
            level, message = DiagnosticStatus.ERROR, f"DAMPING: {supervisor.fault_reason}"
        elif cmd_vel_problem:
            level, message = DiagnosticStatus.WARN, cmd_vel_problem
        values = {
            "state": state.value,
            "fault": supervisor.fault_reason,
            "policy": f"{policy_name} ({controller.policy.info.path.name})",
            "loop period mean (ms)": f"{stats['period_mean_ms']:.3f}",
            "loop period p99 (ms)": f"{stats['period_p99_ms']:.3f}",
            "tick duration p99 (ms)": f"{stats['tick_p99_ms']:.3f}",
            "overruns": str(stats["overruns"]),
            "policy inference p99 (ms)": f"{stats['inference_p99_ms']:.3f}",
            "sensor age (ms)": f"{telemetry.sample_age * 1000:.1f}",
            "command age (s)": f"{command_age:.2f}" if math.isfinite(command_age) else "never",
            "commands rejected": str(supervisor.commands_rejected),
            "command (vx, vy, yaw rate)": ", ".join(f"{v:.2f}" for v in supervisor.command),
            "kp": f"{telemetry.command.kp[0]:.2f}",
            "kd": f"{telemetry.command.kd[0]:.2f}",
            "cmd_vel type": cmd_vel_problem or f"ok ({cmd_vel_type})",
        }
        values.update(controller.backend.diagnostics())
        if recorder is not None:
            values.update(recorder.status())
        status = DiagnosticStatus(level=level, name=f"{NODE_NAME}: control", message=message,
                                  hardware_id=self.profile.name,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        array.status = [status]
        self.diagnostics_pub.publish(array)
        if recorder is not None:
            recorder.record_diagnostics(loop.now(), level, status.name, message, self.profile.name, values)
