"""Several policies in one daemon: `policies` loaded and checked at configure, `~/select_policy` switching between
ticks only from a standing command or from DAMPING, the new policy faded in, its name in /diagnostics. Real rclpy,
the simulated robot, real onnxruntime."""

import numpy as np
import pytest
from geometry_msgs.msg import Twist
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.lifecycle import TransitionCallbackReturn
from std_msgs.msg import Empty

from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.safety import State
from tests.policies import constant_network, standing_network, write_policy
from tests.ros_helpers import WalkClient
from tests.test_node import make_node

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

KNEES = [2, 5, 8, 11]
CROUCH_ACTION = np.zeros(12)
CROUCH_ACTION[KNEES] = [-0.2, 0.2, -0.2, 0.2]  # knees bent 0.1 rad further than the default pose


@pytest.fixture(scope="module")
def policies(tmp_path_factory, profile):
    folder = tmp_path_factory.mktemp("policies")
    return {"stand": write_policy(folder / "stand.onnx", profile, standing_network()),
            "crouch": write_policy(folder / "crouch.onnx", profile, constant_network(CROUCH_ACTION))}


def select(ros, probe, name: str):
    client = getattr(probe, "_select", None) or probe.node.create_client(SetParameters, "/pupper_walk/select_policy")
    probe._select = client
    assert client.wait_for_service(timeout_sec=10)
    value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=name)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name="policy", value=value)]))
    assert ros.spin_until(future.done, 10)
    return future.result().results[0]


def walking_with_two_policies(ros, policies):
    node = make_node(ros, policies["stand"], policies=f"crouch={policies['crouch']}")
    probe = WalkClient(ros)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert set(node.policies) == {"default", "crouch"}
    node.trigger_activate()
    assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10), probe.states
    return node, probe


def test_a_standing_robot_switches_and_fades_the_new_policy_in(ros, policies, profile):
    node, probe = walking_with_two_policies(ros, policies)
    since = len(probe.states)
    result = select(ros, probe, "crouch")
    assert result.successful and "fading in" in result.reason
    assert node.active_policy == "crouch"
    assert ros.spin_until(lambda: probe.state == "WALKING" and "STANDING_UP" in probe.states[since:], timeout=10), probe.states
    expected = profile.default_pose + CURRENT_CONTRACT.action_scale * CROUCH_ACTION
    assert ros.spin_until(lambda: np.allclose(node.controller.command.position, expected, atol=1e-6), timeout=5)

    def policy_in_diagnostics():
        return any(kv.key == "policy" and kv.value.startswith("crouch (crouch.onnx)")
                   for d in probe.diagnostics for kv in d.status[0].values)
    assert ros.spin_until(policy_in_diagnostics, timeout=5)
    node.trigger_deactivate()


def test_a_switch_is_refused_while_the_robot_is_asked_to_move(ros, policies):
    node, probe = walking_with_two_policies(ros, policies)
    twist = Twist()
    twist.linear.x = 0.3
    probe.cmd.publish(twist)
    assert ros.spin_until(lambda: node.controller.supervisor.command[0] > 0.0, timeout=5)
    result = select(ros, probe, "crouch")
    assert not result.successful and "asked to move" in result.reason
    assert node.active_policy == "default" and node.controller.policy is node.policies["default"]
    node.trigger_deactivate()


def test_from_damping_the_selected_policy_takes_over_at_the_next_stand_up(ros, policies, profile):
    node, probe = walking_with_two_policies(ros, policies)
    probe.estop.publish(Empty())
    assert ros.spin_until(lambda: probe.state == "DAMPING")
    result = select(ros, probe, "crouch")
    assert result.successful and "next stand-up" in result.reason
    assert node.controller.state == State.DAMPING  # selecting never clears a latch
    assert probe.clear_fault().success
    expected = profile.default_pose + CURRENT_CONTRACT.action_scale * CROUCH_ACTION
    assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10)
    assert ros.spin_until(lambda: np.allclose(node.controller.command.position, expected, atol=1e-6), timeout=5)
    node.trigger_deactivate()


def test_unknown_names_and_malformed_requests_are_refused_with_the_reason(ros, policies):
    node, probe = walking_with_two_policies(ros, policies)
    result = select(ros, probe, "sprint")
    assert not result.successful and "no policy 'sprint'" in result.reason and "default, crouch" in result.reason
    client = probe._select
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name="speed", value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE, double_value=1.0))]))
    assert ros.spin_until(future.done, 10)
    assert not future.result().results[0].successful and "named 'policy'" in future.result().results[0].reason
    node.trigger_deactivate()


@pytest.mark.parametrize(
    "entries, message",
    [("crouch={missing}", "parameter 'policies': 'crouch': policy"),
     ("crouch", "parameter 'policies': entry 'crouch' is not 'name=file.onnx'"),
     ("default={stand}", "policy name 'default' is used twice")],
    ids=["missing file", "no file", "name taken"],
)
def test_bad_policy_lists_fail_configure_naming_the_entry(ros, policies, tmp_path, entries, message):
    text = entries.format(missing=tmp_path / "none.onnx", stand=policies["stand"])
    node = make_node(ros, policies["stand"], policies=text)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert message in node.configure_error
