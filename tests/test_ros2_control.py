"""The ros2_control backend against the stand-in for Pupper v3's stack (tests/ros2_control_standin.py, named so:
controller_manager is not installable here): configure through pupper-walk --backend ros2_control with the stand-in
as a process of its own, and the backend in-process for the bad inputs; end to end, the daemon walks the stand-in,
faults to damping when it falls silent, and leaves damping on the wire when it is stopped."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from geometry_msgs.msg import Quaternion
from nav_msgs.msg import Odometry
from sensor_msgs.msg import Imu, JointState
from std_msgs.msg import Float64MultiArray

from controller_manager_msgs.srv import SwitchController
from pupper_ros.backends import BackendError
from pupper_ros.backends.ros2_control_backend import Ros2ControlBackend
from tests.ros2_control_standin import Ros2ControlStandIn, StandInProcess
from pupper_ros.backends.io import JointCommand
from tests.ros_helpers import EVENTUALLY_S, RosHarness, WalkClient, stop_process, wait_until

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build



# The robot's stack runs on a computer of its own at real-time priority; here the stand-in, the daemon and the test
# share two cores with whatever else runs. The walking tests give the sensor timeout a margin for that; the behaviour
# they check (walks, faults on silence within the configured timeout, damping on the wire) is the same.
SENSOR_TIMEOUT_S = 0.5


def start_walk(*args, ros_args=()):
    return subprocess.Popen([sys.executable, "-m", "pupper_ros.ros.walk", "--backend", "ros2_control", *args,
                             "--ros-args", "-p", f"sensor_timeout:={SENSOR_TIMEOUT_S}", *ros_args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_and_read(proc) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=30)[0]



@pytest.fixture
def standin(profile):
    robot = Ros2ControlStandIn(profile).start()
    yield robot
    robot.stop()


class RobotWatch:
    """What reaches the stand-in's controllers (each in its own order: the checks here need none) and its ground truth."""

    ROLES = {"position": "forward_position_controller", "kp": "forward_kp_controller", "kd": "forward_kd_controller"}

    def __init__(self, ros: RosHarness):
        self.node = ros.add(rclpy.create_node("robot_watch", context=ros.context))
        self.last = {}
        self.speed = None
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for role, controller in self.ROLES.items():
            self.node.create_subscription(Float64MultiArray, f"/{controller}/commands",
                                          lambda m, role=role: self.last.__setitem__(role, np.array(m.data)), reliable)
        self.node.create_subscription(Odometry, "/standin/odom", self._on_odom, 10)

    def _on_odom(self, msg):
        self.speed = msg.twist.twist.linear.x

    def damping(self) -> bool:
        return "kp" in self.last and np.all(self.last["kp"] == 0.0) and np.all(self.last.get("kd", [0]) > 0)


def test_the_standin_speaks_in_orders_other_than_the_policys(standin, profile):
    orders = [standin.broadcast_order] + [c.joints for c in standin.controllers.values()]
    assert all(order != list(profile.joints) for order in orders)
    assert len({tuple(order) for order in orders}) == len(orders)  # and each its own


def test_a_controller_lacking_a_joint_fails_configure_naming_it(profile):
    joints = [j for j in profile.joints if j != "leg_back_l_3"]
    with StandInProcess(joints_override={"forward_kd_controller": joints}):
        result = subprocess.run([sys.executable, "-m", "pupper_ros.ros.walk", "--backend", "ros2_control"], capture_output=True,
                                text=True, timeout=120)
    assert result.returncode == 1
    assert "controller 'forward_kd_controller' lacks profile joint(s) leg_back_l_3" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_controller_manager_fails_configure_with_what_to_check(profile):
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        backend = Ros2ControlBackend(profile, 0.02, context=context, timeout=0.5)
        with pytest.raises(BackendError, match="forward_position_controller.*is controller_manager running"):
            backend.open()
    finally:
        rclpy.shutdown(context=context)


def test_the_daemons_controller_manager_timeout_reaches_the_backend():
    """pupper-walk's controller_manager_timeout is how long configure waits for the robot's stack; with none there,
    configure fails after it, naming it."""
    result = subprocess.run([sys.executable, "-m", "pupper_ros.ros.walk", "--backend", "ros2_control", "--ros-args", "-p",
                             "controller_manager_timeout:=0.7"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "no answer within 0.7 s (is controller_manager running" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value, kind", [(42, "2"), ([0.1, 0.2], "8")], ids=["integer", "double array"])
def test_a_joints_parameter_of_the_wrong_type_is_refused(profile, value, kind):
    robot = Ros2ControlStandIn(profile, joints_override={"forward_kp_controller": value}).start()
    try:
        backend = Ros2ControlBackend(profile, 0.02, context=robot.context, timeout=5.0)
        with pytest.raises(BackendError, match=f"'forward_kp_controller': parameter 'joints' is of type {kind}"):
            backend.open()
    finally:
        robot.stop()


def open_backend(profile, robot, **kwargs) -> Ros2ControlBackend:
    backend = Ros2ControlBackend(profile, 0.02, context=robot.context, **kwargs)
    backend.open()
    return backend


def test_activate_controllers_switches_strictly_and_the_check_passes(profile):
    """The success path of the switch (controller_manager_msgs built from the test stand-in package): the three
    forward controllers activated and neural_controller deactivated in one STRICT request."""
    robot = Ros2ControlStandIn(profile, states={**{c: "inactive" for c in RobotWatch.ROLES.values()},
                                                "neural_controller": "active"}).start()
    try:
        backend = open_backend(profile, robot, activate_controllers=True)
        (request,) = robot.manager.switch_requests
        assert request.strictness == SwitchController.Request.STRICT
        assert sorted(request.activate_controllers) == sorted(RobotWatch.ROLES.values())
        assert list(request.deactivate_controllers) == ["neural_controller"]
        assert robot.manager.states["neural_controller"] == "inactive"
        assert backend.verify() == ""
        backend.close()
    finally:
        robot.stop()


def test_a_refused_switch_fails_configure_with_the_managers_reason(profile):
    """STRICT: the kd controller cannot be activated (unconfigured), so nothing is switched."""
    robot = Ros2ControlStandIn(profile, states={"forward_position_controller": "inactive",
                                                "forward_kp_controller": "inactive",
                                                "forward_kd_controller": "unconfigured",
                                                "neural_controller": "active"}).start()
    try:
        with pytest.raises(BackendError, match="refused to switch controllers .'forward_kd_controller' is unconfigured"):
            open_backend(profile, robot, activate_controllers=True)
        assert robot.manager.states["forward_position_controller"] == "inactive"
        assert robot.manager.states["neural_controller"] == "active"
    finally:
        robot.stop()


def test_an_open_that_fails_after_switching_puts_the_switch_back(profile):
    """Finding 9: a configure failure after activate_controllers left the switch in place (here the broadcasters
    are silent, so open fails waiting for the first messages, after the switch)."""
    robot = Ros2ControlStandIn(profile, states={**{c: "inactive" for c in RobotWatch.ROLES.values()},
                                                "neural_controller": "active"}).start()
    robot.go_silent()
    try:
        with pytest.raises(BackendError, match="no valid message"):
            open_backend(profile, robot, activate_controllers=True, timeout=1.0)
        assert len(robot.manager.switch_requests) == 2  # the switch, and the switch back
        assert robot.manager.states["neural_controller"] == "active"
        assert all(robot.manager.states[c] == "inactive" for c in RobotWatch.ROLES.values())
    finally:
        robot.stop()


def test_abandon_puts_back_the_switch_made_at_open(profile):
    """What the node calls when configure fails after the backend opened (an unwritable flight log, say)."""
    robot = Ros2ControlStandIn(profile, states={**{c: "inactive" for c in RobotWatch.ROLES.values()},
                                                "neural_controller": "active"}).start()
    try:
        backend = open_backend(profile, robot, activate_controllers=True)
        backend.abandon()
        assert robot.manager.states["neural_controller"] == "active"
        assert robot.manager.states["forward_kp_controller"] == "inactive"
    finally:
        robot.stop()


@pytest.mark.parametrize("state", ["inactive", "unconfigured"])
def test_configure_refuses_an_inactive_controller_naming_it_and_the_command(profile, state):
    """Finding 4: an inactive kp controller was assumed active; DAMPING's kp 0 would have gone into nothing."""
    robot = Ros2ControlStandIn(profile, states={"forward_kp_controller": state}).start()
    try:
        with pytest.raises(BackendError, match=f"controller 'forward_kp_controller' is {state}, not active "
                                               r"\(activate them: ros2 control switch_controllers"):
            open_backend(profile, robot)
    finally:
        robot.stop()


def test_a_controller_deactivated_or_reloaded_later_is_found_by_verify_and_write_raises(profile, standin):
    backend = open_backend(profile, standin)
    try:
        assert backend.verify() == ""
        standin.set_state("forward_position_controller", "inactive")
        assert "controller 'forward_position_controller' is inactive, not active" in backend.verify()
        damping = JointCommand(profile.num_joints)
        with pytest.raises(BackendError, match="forward_position_controller"):
            backend.write(damping, 0.0)
        standin.set_state("forward_position_controller", "active")
        assert backend.verify() == ""
        standin.controllers["kd"].reload(list(reversed(standin.controllers["kd"].joints)))  # same joints, new order
        assert "controller 'forward_kd_controller' changed its 'joints' since configure" in backend.verify()
    finally:
        backend.close()


def test_the_periodic_check_finds_a_controller_gone_inactive_without_being_asked(profile, standin):
    backend = open_backend(profile, standin)
    try:
        standin.set_state("forward_kp_controller", "inactive")
        assert wait_until(lambda: "forward_kp_controller" in backend.problem())
    finally:
        backend.close()


def test_close_reports_whether_the_controllers_acknowledged_damping(profile, standin):
    backend = open_backend(profile, standin)
    backend.close()
    assert backend.stop_report == "damping acknowledged by all three forward controllers"
    # acknowledged is DDS's word that the message reached the stand-in's reader; its callback runs on its own thread
    assert wait_until(lambda: standin.last_command("kp") is not None)
    assert np.all(standin.last_command("kp") == 0.0)


def test_bad_messages_are_dropped_and_counted_with_a_reason(profile, standin):
    backend = Ros2ControlBackend(profile, 0.02, context=standin.context)
    backend.open()
    bad = rclpy.create_node("bad_publisher", context=standin.context)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    joints_pub = bad.create_publisher(JointState, "/joint_states", qos)
    imu_pub = bad.create_publisher(Imu, "/imu_sensor_broadcaster/imu", qos)
    try:
        standin.go_silent()  # only the bad messages now
        n = profile.num_joints
        future = bad.get_clock().now().nanoseconds + int(60e9)
        cases = [
            ("joint_states", JointState(name=list(profile.joints), position=[0.0] * n, velocity=[0.0] * (n - 1)), "12 names but"),
            ("joint_states", JointState(name=list(profile.joints), position=[float("nan")] * n, velocity=[0.0] * n), "non-finite"),
            ("joint_states", JointState(name=["other_joint"], position=[0.0], velocity=[0.0]), "missing profile joint"),
            ("imu", Imu(orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)), "not a unit quaternion (norm 0.000)"),
        ]
        late = JointState(name=list(profile.joints), position=[0.0] * n, velocity=[0.0] * n)
        late.header.stamp.sec, late.header.stamp.nanosec = divmod(future, 10**9)
        cases.append(("joint_states", late, "stamp in the future"))
        half = Imu()
        half.orientation.w = 0.5
        cases.append(("imu", half, "norm 0.500"))
        for stream, message, reason in cases:
            before = backend.dropped[stream]
            deadline = time.monotonic() + EVENTUALLY_S
            while backend.dropped[stream] == before and time.monotonic() < deadline:
                (joints_pub if stream == "joint_states" else imu_pub).publish(message)
                time.sleep(0.05)
            assert backend.dropped[stream] > before, reason
            assert reason in backend.drop_reason[stream]
            assert reason in backend.diagnostics()[f"ros2_control {stream} dropped"]
            assert reason in backend.problem()  # a fault is not cleared while the newest message is bad
    finally:
        bad.destroy_node()
        backend.close()


def _walking(ros, client, proc) -> None:
    assert ros.spin_until(lambda: client.state == "WALKING", timeout=60), (client.states, proc.poll())


def test_the_daemon_walks_the_standin_forward_and_sigterm_leaves_damping_on_the_wire(ros):
    watch, client = RobotWatch(ros), WalkClient(ros)
    with StandInProcess():
        proc = start_walk()
        try:
            _walking(ros, client, proc)
            # the stand-in's own ground truth (its simulator's body velocity), after a second to get going
            speeds = client.drive(0.3, 6.0, measure=lambda: watch.speed, settle=1.0)
            print(f"walked the stand-in at {np.mean(speeds):.3f} m/s for 0.3 commanded ({len(speeds)} readings)")
            assert speeds and abs(np.mean(speeds) - 0.3) < 0.1, f"walked {np.mean(speeds):.3f} m/s for 0.3 commanded"
            assert client.state == "WALKING"
            assert stop_process(proc, signal.SIGTERM) == 0
            # This stack has no command watchdog: the last command the controllers got must be damping.
            assert ros.spin_until(watch.damping, timeout=EVENTUALLY_S), watch.last.get("kp")
        finally:
            stop_and_read(proc)


def test_a_silent_robot_latches_damping_and_kp_zero_reaches_its_controller(ros):
    watch, client = RobotWatch(ros), WalkClient(ros)
    with StandInProcess() as standin:
        proc = start_walk()
        try:
            _walking(ros, client, proc)
            assert not watch.damping()
            standin.go_silent()
            assert client.wait_state("DAMPING", timeout=EVENTUALLY_S), client.states
            assert ros.spin_until(watch.damping, timeout=EVENTUALLY_S), watch.last.get("kp")
            def faults():
                return [kv.value for d in client.diagnostics for status in d.status for kv in status.values if kv.key == "fault"]

            assert ros.spin_until(lambda: any("sensor sample" in f for f in faults()), timeout=EVENTUALLY_S), faults()[-3:]
        finally:
            stop_and_read(proc)


def test_the_demo_walks_the_standin_measured_on_its_ground_truth_and_ends_in_damping(ros):
    """The robot docs' demo against the stand-in (docs/robots.md): pupper-walk --backend ros2_control --demo --demo-odom /standin/odom."""
    watch = RobotWatch(ros)
    with StandInProcess():
        result = subprocess.run([sys.executable, "-m", "pupper_ros.ros.walk", "--backend", "ros2_control", "--demo",
                                 "--demo-odom", "/standin/odom", "--ros-args", "-p", f"sensor_timeout:={SENSOR_TIMEOUT_S}"],
                                capture_output=True, text=True, timeout=180)
        print(result.stdout)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "faults: none" in result.stdout
        rows = {line[:10].strip(): line[10:].split() for line in result.stdout.splitlines()
                if line[:10].strip() in ("forward", "turn left", "backward")}
        measured = {name: [float(v) for v in values[3:6]] for name, values in rows.items()}
        assert abs(measured["forward"][0] - 0.3) < 0.1, measured
        assert abs(measured["backward"][0] + 0.3) < 0.1, measured
        assert abs(measured["turn left"][2] - 1.0) < 0.2, measured
        # the daemon exited by itself at the end of the script: the last command on the wire is damping
        assert ros.spin_until(watch.damping, timeout=EVENTUALLY_S), watch.last.get("kp")


def test_a_controller_deactivated_while_walking_latches_damping_naming_it(ros):
    """Finding 4, while walking: the periodic check finds the kp controller inactive; the daemon latches DAMPING
    naming it, and ~/clear_fault is refused until the controller is active again."""
    client = WalkClient(ros)
    with StandInProcess() as standin:
        proc = start_walk()
        try:
            _walking(ros, client, proc)
            standin.set_state("forward_kp_controller", "inactive")
            assert client.wait_state("DAMPING", timeout=EVENTUALLY_S), client.states

            def faults():
                return [kv.value for d in client.diagnostics for status in d.status for kv in status.values if kv.key == "fault"]

            assert ros.spin_until(lambda: any("controller 'forward_kp_controller' is inactive" in f for f in faults()),
                                  timeout=EVENTUALLY_S), faults()[-3:]
            refused = client.clear_fault()
            assert not refused.success and "forward_kp_controller" in refused.message
            standin.set_state("forward_kp_controller", "active")
            assert ros.spin_until(lambda: client.clear_fault().success, timeout=EVENTUALLY_S)
            assert client.wait_state("WALKING", timeout=30), client.states
        finally:
            stop_and_read(proc)


def test_sigterm_during_configure_activates_nothing_and_exits_0(ros):
    """Finding 6: a signal during configure used to be followed by activation and a stand-up command. The daemon
    starts before the robot's stack, so its configure waits for controller_manager; SIGTERM arrives then; the stack
    comes up and configure completes, and no command with kp > 0 ever reaches the controllers."""
    watch = RobotWatch(ros)
    kps = []
    for controller in ("forward_kp_controller",):
        watch.node.create_subscription(Float64MultiArray, f"/{controller}/commands", lambda m: kps.append(max(m.data)),
                                       QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    # A name of its own: an earlier test's pupper_walk can linger in the DDS graph until its lease expires, and a signal
    # sent on seeing that one would reach this process before it has its handlers.
    node_name = f"pupper_walk_sigterm_{os.getpid()}"
    # The stand-in starts after the signal and, beside the rest of the suite, may take longer than the 5 s default
    # to answer: configure is given the time to complete.
    proc = start_walk(ros_args=("-r", f"__node:={node_name}", "-p", "controller_manager_timeout:=60.0"))
    try:
        assert ros.spin_until(lambda: node_name in watch.node.get_node_names(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        with StandInProcess():
            output = proc.communicate(timeout=60)[0]
            ros.spin_for(1.0)
        assert proc.returncode == 0, output
        assert "stopped by a signal during configure; nothing was activated" in output
        assert kps and all(kp == 0.0 for kp in kps), kps  # damping from close, nothing else
    finally:
        stop_and_read(proc)


def test_close_says_so_when_no_controller_acknowledges_damping(profile):
    """Finding 5: the acknowledgement waits' results were ignored; now close reports which controllers did not
    acknowledge damping, within one shared deadline. Here the robot's stack is gone before the daemon stops."""
    robot = Ros2ControlStandIn(profile).start()
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        backend = Ros2ControlBackend(profile, 0.02, context=context)
        backend.open()
        robot.stop()
        backend.close()
        assert backend.stop_report.startswith(
            "damping sent; not acknowledged within 0.5 s by forward_position_controller, forward_kp_controller, "
            "forward_kd_controller"), backend.stop_report
    finally:
        rclpy.shutdown(context=context)
