"""pupper-teleop --joy: the mapping files, the stick and button logic, and end to end with real rclpy: the test
publishes sensor_msgs/Joy as joy_node does, `pupper-teleop --joy` runs as its own process, and the daemon
(in-process, simulated robot) answers its /cmd_vel, /emergency_stop, ~/clear_fault and ~/select_policy."""

import signal
import subprocess
import sys
import time

import pytest
from geometry_msgs.msg import Twist
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Joy

from pupper_ros.ros.joy_teleop import JOY_TIMEOUT, JoyCommander, JoyMapping, MappingError
from tests.ros_helpers import WalkClient, stop_process
from tests.test_node import make_node
from tests.test_policy_switching import policies  # noqa: F401 - the fixture

DUALSENSE = JoyMapping.load("dualsense")


def joy(axes=None, held=(), size=(8, 13)) -> tuple[list[float], list[int]]:
    """A DualSense message as joy_node publishes it: ``axes`` {index: value}, ``held`` button indices."""
    a = [0.0] * size[0]
    for i, v in (axes or {}).items():
        a[i] = v
    return a, [1 if i in held else 0 for i in range(size[1])]


# --- mapping files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dualsense", "xbox"])
def test_the_shipped_mappings_load(name):
    mapping = JoyMapping.load(name)
    assert set(mapping.axes) == {"vx", "vy", "yaw"}
    assert set(mapping.buttons) == {"deadman", "emergency_stop", "clear_fault", "next_policy"}
    assert len(set(mapping.buttons.values())) == 4  # no button does two things


@pytest.mark.parametrize(
    "text, message",
    [("axes: {vx: {index: 1, sign: 1}}", "axes.vy must be"),
     ("axes: {vx: {index: 1, sign: 2}, vy: {index: 0, sign: 1}, yaw: {index: 3, sign: 1}}", "axes.vx must be"),
     ("axes: {vx: {index: 1, sign: 1}, vy: {index: 0, sign: 1}, yaw: {index: 3, sign: 1}}\nbuttons: {deadman: -1}",
      "buttons.deadman must be an index"),
     ("[unclosed", "not YAML")],
)
def test_a_bad_mapping_file_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "pad.yaml"
    path.write_text(text)
    with pytest.raises(MappingError, match=message):
        JoyMapping.load(str(path))
    with pytest.raises(MappingError, match="shipped: dualsense, xbox"):
        JoyMapping.load("gamecube")


# --- sticks and buttons ---------------------------------------------------------------------------------------
def test_sticks_span_the_profiles_command_ranges_past_a_dead_zone(profile):
    pad = JoyCommander(DUALSENSE, profile.command_low, profile.command_high)
    deadman = DUALSENSE.buttons["deadman"]
    assert pad.update(*joy({1: 1.0, 0: -1.0, 3: 1.0}, {deadman})).command == pytest.approx(
        (profile.command_high[0], profile.command_low[1], profile.command_high[2]))
    assert pad.update(*joy({1: -1.0}, {deadman})).command == pytest.approx((profile.command_low[0], 0.0, 0.0))
    assert pad.update(*joy({1: 0.09, 3: -0.1}, {deadman})).command == (0.0, 0.0, 0.0)  # inside the dead zone
    half = pad.update(*joy({1: 0.55}, {deadman})).command[0]  # halfway from the dead zone's edge to full
    assert half == pytest.approx(0.5 * profile.command_high[0])


def test_released_deadman_publishes_one_zero_then_nothing(profile):
    pad = JoyCommander(DUALSENSE, profile.command_low, profile.command_high)
    assert pad.update(*joy({1: 1.0})).command is None  # sticks alone do nothing
    assert pad.update(*joy({1: 1.0}, {DUALSENSE.buttons["deadman"]})).command[0] > 0
    assert pad.update(*joy({1: 1.0})).command == (0.0, 0.0, 0.0)
    assert pad.update(*joy({1: 1.0})).command is None


def test_buttons_act_once_per_press_and_the_e_stop_wins_over_driving(profile):
    pad = JoyCommander(DUALSENSE, profile.command_low, profile.command_high)
    estop, deadman = DUALSENSE.buttons["emergency_stop"], DUALSENSE.buttons["deadman"]
    first = pad.update(*joy({1: 1.0}, {deadman, estop}))
    assert first.emergency_stop and first.command is None
    assert not pad.update(*joy({1: 1.0}, {deadman, estop})).emergency_stop  # held: no second stop
    assert pad.update(*joy(held={DUALSENSE.buttons["clear_fault"]})).clear_fault


def test_a_message_too_short_for_the_mapping_releases_and_says_why(profile):
    pad = JoyCommander(DUALSENSE, profile.command_low, profile.command_high)
    pad.update(*joy({1: 1.0}, {DUALSENSE.buttons["deadman"]}))
    actions = pad.update([0.0] * 2, [1] * 13)
    assert actions.command == (0.0, 0.0, 0.0) and "needs 4" in actions.problem


# --- end to end -------------------------------------------------------------------------------------------------
def teleop_output(proc) -> str:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=10)[0]


class Pad:
    """The test's joy_node: publishes Joy at 20 Hz while ``spin`` runs; records /cmd_vel."""

    def __init__(self, ros, probe):
        self.ros, self.node = ros, probe.node
        self.pub = self.node.create_publisher(Joy, "/joy", 10)
        self.received: list[tuple[float, float, float, float]] = []  # (arrival, vx, vy, yaw)
        self.node.create_subscription(Twist, "/cmd_vel", lambda m: self.received.append(
            (time.monotonic(), m.linear.x, m.linear.y, m.angular.z)), QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.message = joy()

    def hold(self, seconds: float, axes=None, held=()) -> None:
        self.message = joy(axes, held)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = Joy()
            msg.axes, msg.buttons = self.message
            self.pub.publish(msg)
            self.ros.spin_for(0.05)


@pytest.mark.slow
def test_the_gamepad_drives_stops_clears_and_switches_policy(ros, policies, profile):  # noqa: F811
    node = make_node(ros, policies["stand"], policies=f"crouch={policies['crouch']}")
    probe = WalkClient(ros)
    pad = Pad(ros, probe)
    node.trigger_configure()
    node.trigger_activate()
    teleop = subprocess.Popen([sys.executable, "-m", "pupper_ros.ros.teleop", "--joy", "--mapping", "dualsense"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    b = DUALSENSE.buttons
    try:
        assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10), probe.states
        assert ros.spin_until(lambda: pad.pub.get_subscription_count() > 0, timeout=20), "teleop never subscribed /joy"
        pad.hold(0.5, {1: 1.0})  # stick forward, deadman released: nothing is published
        assert pad.received == []

        pad.hold(1.0, {1: 1.0}, {b["deadman"]})  # deadman held: full forward, the profile's maximum
        assert pad.received and pad.received[-1][1] == pytest.approx(profile.command_high[0])
        assert node.controller.supervisor.command[0] == pytest.approx(profile.command_high[0])

        count = len(pad.received)
        pad.hold(0.5, {1: 1.0})  # released: exactly one zero command
        assert [r[1:] for r in pad.received[count:]] == [(0.0, 0.0, 0.0)]

        pad.hold(1.0)  # standing: the robot's command ramps to zero, then next policy switches
        pad.hold(0.3, held={b["next_policy"]})
        assert ros.spin_until(lambda: node.active_policy == "crouch", timeout=5), teleop_output(teleop)

        pad.hold(0.3, held={b["emergency_stop"]})
        assert ros.spin_until(lambda: probe.state == "DAMPING", timeout=5)
        assert "emergency stop" in node.controller.supervisor.fault_reason
        pad.hold(0.3, held={b["clear_fault"]})
        assert ros.spin_until(lambda: probe.state == "WALKING", timeout=10), probe.states

        pad.hold(0.5, {1: 1.0}, {b["deadman"]})  # driving, then the pad goes out of range
        count, silent_from = len(pad.received), time.monotonic()

        def since_silence():  # what reached the robot once the pad's last messages were through
            return [r for r in pad.received[count:] if r[0] >= silent_from + 0.2]

        # teleop's zero comes after JOY_TIMEOUT of silence; on a loaded machine later, so wait for it, then watch
        assert ros.spin_until(lambda: since_silence(), timeout=10 + JOY_TIMEOUT), teleop_output(teleop)
        ros.spin_for(3 * JOY_TIMEOUT)
        assert [r[1:] for r in since_silence()] == [(0.0, 0.0, 0.0)]  # teleop's own zero; then nothing
        assert node.controller.supervisor.command[0] == 0.0
    finally:
        code = stop_process(teleop, signal.SIGINT)  # as Ctrl-C
        output = teleop.communicate()[0]
        node.trigger_deactivate()
    assert code == 0, output
