"""The pupper_walk lifecycle node in-process, with real rclpy and DDS on loopback and the simulated robot."""

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Twist, TwistStamped
from rclpy.exceptions import InvalidHandle
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_msgs.msg import Empty

from pupper_ros.ros.node import WalkNode
from tests.policies import standing_network, write_policy
from tests.ros_helpers import RosHarness, WalkClient

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build


@pytest.fixture(scope="module")
def standing_policy(tmp_path_factory, profile):
    return write_policy(tmp_path_factory.mktemp("node") / "stand.onnx", profile, standing_network())


def make_node(ros, policy_path, **params):
    values = {"policy": str(policy_path), "soft_start_duration": 0.5, "fade_in_duration": 0.5} | params
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    return ros.add(WalkNode(context=ros.context, parameter_overrides=overrides))


def test_lifecycle_configure_activate_deactivate_cleanup(ros, standing_policy):
    node = make_node(ros, standing_policy)
    probe = WalkClient(ros)
    assert ros.spin_until(lambda: probe.state == "INACTIVE")
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.loop is not None and not node.loop.running  # configured, but nothing moves yet
    configured_timers = list(node.timers)
    assert len(configured_timers) == 2  # telemetry and diagnostics
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10)
    assert "STANDING_UP" in probe.states
    assert ros.spin_until(lambda: len(probe.odom) > 5)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert ros.spin_until(lambda: probe.state == "DAMPING")
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.controller is None
    assert list(node.timers) == []
    for timer in configured_timers:  # destroyed, not only forgotten: each configure/cleanup cycle would leak one
        with pytest.raises(InvalidHandle):
            timer.timer_period_ns


def test_emergency_stop_then_clear_fault_stands_up_again(ros, standing_policy):
    node = make_node(ros, standing_policy)
    probe = WalkClient(ros)
    node.trigger_configure()
    node.trigger_activate()
    assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10)
    probe.estop.publish(Empty())
    assert ros.spin_until(lambda: probe.state == "DAMPING")
    assert "emergency stop" in node.controller.supervisor.fault_reason
    assert ros.spin_until(lambda: any(s.status[0].level == DiagnosticStatus.ERROR and "emergency stop" in s.status[0].message for s in probe.diagnostics), timeout=10)
    result = probe.clear_fault()
    assert result.success, result.message
    assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10)
    node.trigger_deactivate()


def test_clear_fault_is_refused_when_not_active(ros, standing_policy):
    make_node(ros, standing_policy)
    probe = WalkClient(ros)
    result = probe.clear_fault()
    assert not result.success and "not active" in result.message


def test_diagnostics_report_the_loop_and_a_cmd_vel_of_the_wrong_type(ros, standing_policy):
    node = make_node(ros, standing_policy)
    probe = WalkClient(ros)
    other = RosHarness()  # another process's participant, publishing the other type (one participant cannot hold both)
    stamped = other.add(rclpy.create_node("stamped_teleop", context=other.context)).create_publisher(TwistStamped, "/cmd_vel", 10)
    node.trigger_configure()
    node.trigger_activate()
    assert ros.spin_until(lambda: len(probe.diagnostics) >= 2, timeout=10)
    def values():
        return {kv.key: kv.value for kv in probe.diagnostics[-1].status[0].values}
    for key in ("state", "fault", "loop period mean (ms)", "loop period p99 (ms)", "overruns", "policy inference p99 (ms)",
                "sensor age (ms)", "command age (s)", "commands rejected"):
        assert key in values()
    assert ros.spin_until(lambda: "TwistStamped" in values()["cmd_vel type"], timeout=10)
    assert stamped is not None
    node.trigger_deactivate()
    other.close()


def test_cmd_vel_reaches_the_supervisor_clamped(ros, standing_policy):
    node = make_node(ros, standing_policy)
    probe = WalkClient(ros)
    node.trigger_configure()
    node.trigger_activate()
    twist = Twist()
    twist.linear.x = 9.0
    assert ros.spin_until(lambda: (probe.cmd.publish(twist), node.controller.supervisor.command[0] > 0)[1], timeout=10)
    assert node.controller.supervisor.command[0] == pytest.approx(node.policy.info.command_high[0])
    node.trigger_deactivate()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"backend": "warp"}, "parameter 'backend': unknown backend 'warp'"),
        ({"policy": "/nonexistent/policy.onnx"}, "parameter 'policy': policy /nonexistent/policy.onnx: file not found"),
        ({"robot": "pupper_v9"}, "parameter 'robot': unknown robot 'pupper_v9'"),
        ({"control_rate": 75.0}, "parameter 'control_rate' 75.0 Hz must be a whole multiple"),
        ({"joint_limit_margin": 0.5}, "parameter 'joint_limit_margin'"),
        ({"sim_engine": "mujoco", "control_rate": 100.0},
         "parameter 'control_rate': a 10 ms control period is not a whole number of 4 ms physics steps"),
    ],
)
def test_bad_configuration_fails_configure_naming_the_parameter(ros, standing_policy, params, message):
    node = make_node(ros, standing_policy, **params)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert message in node.configure_error
    assert node.controller is None


def _walking(ros, node, probe):
    node.trigger_configure()
    node.trigger_activate()
    assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10), probe.states


def _stays_damping(ros, node, probe, reason, since: int):
    """DAMPING on ~/state ever since ``probe.states[since]``, kp 0 at the robot and the latched reason kept, for a
    second of ticks after activation."""
    ros.spin_for(1.0)
    assert set(probe.states[since:]) == {"DAMPING"}, probe.states
    assert node.controller.supervisor.fault_reason == reason
    assert node.controller.command.kp.max() == 0.0


def _walking_then_emergency_stop(ros, standing_policy):
    """A node walking, then stopped by /emergency_stop; returns it, its probe and the index of that DAMPING."""
    node = make_node(ros, standing_policy)
    probe = WalkClient(ros)
    _walking(ros, node, probe)
    probe.estop.publish(Empty())
    assert ros.spin_until(lambda: probe.state == "DAMPING")
    return node, probe, len(probe.states) - 1


def test_an_emergency_stop_survives_deactivate_and_activate(ros, standing_policy):
    """Finding 2 of the fail-closed review: deactivate + activate used to stand the robot up again."""
    node, probe, since = _walking_then_emergency_stop(ros, standing_policy)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    _stays_damping(ros, node, probe, "emergency stop", since)
    result = probe.clear_fault()
    assert result.success and "emergency stop" in result.message
    assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10)
    node.trigger_deactivate()


def test_an_emergency_stop_survives_cleanup_and_configure_and_one_before_configure_holds(ros, standing_policy):
    node, probe, since = _walking_then_emergency_stop(ros, standing_policy)
    node.trigger_deactivate()
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    node.trigger_activate()
    _stays_damping(ros, node, probe, "emergency stop", since)
    node.trigger_deactivate()

    fresh = make_node(ros, standing_policy)  # an e-stop before anything is configured
    probe.estop.publish(Empty())
    assert ros.spin_until(lambda: fresh.latched_fault == "emergency stop")


def test_an_exception_in_the_nodes_per_tick_work_shows_in_state_and_diagnostics(ros, standing_policy):
    """Finding 3: the control thread died silently with ~/state WALKING and /diagnostics OK."""
    node = make_node(ros, standing_policy)
    probe = WalkClient(ros)
    _walking(ros, node, probe)

    def broken(now, controller):
        raise ValueError("telemetry buffer mismatch")

    node.publisher.telemetry.capture = broken
    assert ros.spin_until(lambda: probe.state == "DAMPING", timeout=10)
    expected = "DAMPING: control loop failed: ValueError: telemetry buffer mismatch"
    assert ros.spin_until(lambda: any(d.status[0].level == DiagnosticStatus.ERROR and d.status[0].message == expected
                                      for d in probe.diagnostics), timeout=10)
    assert node.loop.running and node.controller.command.kp.max() == 0.0
    node.trigger_deactivate()


def test_destroying_an_active_node_stops_its_control_loop_first(standing_policy):
    """An active pupper_walk destroyed without a shutdown transition (the `ros` fixture after a test that failed
    half-way, or any embedder) once left its control and watchdog threads running; destroy_node now tears down
    first. Found 2026-12-07 while chasing a worker that segfaulted in destroy_node; whether that was the cause is not
    known."""
    harness = RosHarness()
    node = make_node(harness, standing_policy)
    probe = WalkClient(harness)
    _walking(harness, node, probe)
    loop = node.loop
    assert loop.running
    harness.close()  # destroys every node, with no lifecycle transition
    assert not loop.running and node.controller is None
