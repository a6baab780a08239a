"""pupper-preflight against the ros2_control stand-in (tests/ros2_control_standin.py: controller_manager is not
installable here) and the firmware emulator on a real pseudo-terminal, each healthy and with one injected wiring
fault (pupper_ros/sim/sensor_faults.py). Every fault must be named; no check may send a command with kp > 0."""

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy

from pupper_ros.robot_profile import load_robot_profile
from pupper_ros.ros import preflight
from pupper_ros.sim.firmware_emulator import FirmwareEmulator
from pupper_ros.sim.sensor_faults import SensorFaults
from tests.ros2_control_standin import Ros2ControlStandIn

MOTOR_TURN = 2 * math.pi / load_robot_profile("pupper_v3").actuator.gear_ratio  # one motor turn at the joint


@pytest.fixture
def ros_context():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def run_on_standin(profile, faults=None, states=None, guided=False):
    """Preflight (in this process) against a stand-in (in this process, its own ROS context); returns the findings,
    the exit code and what each forward controller received."""
    robot = Ros2ControlStandIn(profile, sensor_faults=faults, states=states).start()
    try:
        args = preflight.build_parser().parse_args(["--backend", "ros2_control", "--seconds", "1"]
                                                   + (["--guided"] if guided else []))
        findings, code = preflight.run(args, ask=Hand(robot, profile) if guided else None)
        received = {c.name: c.received for c in robot.controllers.values()}
    finally:
        robot.stop()
    return findings, code, received


def verdicts(findings) -> dict[str, tuple[str, str]]:
    return {f.check: (f.verdict, f.detail) for f in findings}


class Hand:
    """The owner's hands on the stand-in, following preflight's prompts: tilts the body nose up, holds the robot in
    the air, and pulls a foot down by unfolding its knee from the rest stop (the knee alone, as far as a hand pulls
    it)."""

    def __init__(self, robot, profile):
        self.robot, self.profile = robot, profile
        self.kinematics = preflight.Kinematics(profile)
        self.prompts = []

    def __call__(self, prompt: str) -> None:
        self.prompts.append(prompt)
        robot = self.robot
        if "lift its nose" in prompt:
            half = math.radians(-20.0) / 2  # REP 103: a positive pitch puts the nose down
            robot.hold_body([0.0, math.sin(half), 0.0, math.cos(half)])
        elif "in the air" in prompt:
            robot.hold_body([0.0, 0.0, 0.0, 1.0], lift=0.2)
        elif prompt.startswith("Put the robot down"):
            robot.hold_body(None)
        elif prompt.startswith("Pull the"):
            foot = next(f for f in self.profile.feet if f"the {preflight.foot_words(f)} foot" in prompt)
            knee = self.kinematics.leg_joints[foot][-1]
            robot.hold_joints({self.profile.joints[knee]: 0.4 * robot.ground_truth().joint_position[knee]})
        elif prompt.startswith("Let go"):
            robot.hold_joints(None)
        time.sleep(0.6)  # the hand's motion settles before preflight records


@pytest.mark.slow
def test_a_healthy_standin_passes_and_nothing_is_sent(ros_context, profile):
    findings, code, received = run_on_standin(profile)
    table = preflight.table(findings)
    assert code == 0, table
    found = verdicts(findings)
    for check in ("joints", "joint range", "rest pose", "joint_states rate", "imu rate", "imu at rest",
                  "forward_position_controller", "forward_kp_controller", "forward_kd_controller"):
        assert found[check][0] == preflight.PASS, table
    # the knees rest on their stops, past the software limits: expected, and said
    assert "leg_front_r_3" in found["joint range"][1]
    assert received == {name: 0 for name in received}  # not one message to any controller


@pytest.mark.slow
@pytest.mark.parametrize(
    "faults, check, words",
    [
        ({"flipped": ["leg_front_r_3"]}, "rest pose", ["leg_front_r_3", "sign reversed"]),
        ({"offset": {"leg_back_l_1": MOTOR_TURN}}, "rest pose", ["leg_back_l_1", "+1 motor turn"]),
        ({"missing": ["leg_back_r_2"]}, "joints", ["missing profile joint(s) leg_back_r_2"]),
        ({"rate_divisor": 10}, "joint_states rate", ["26 Hz", "needs 50 Hz"]),
    ],
    ids=["sign flipped", "one motor turn off", "joint missing", "a tenth of the rate"],
)
def test_each_wiring_fault_is_named(ros_context, profile, faults, check, words):
    findings, code, received = run_on_standin(profile, faults=faults)
    table = preflight.table(findings)
    assert code == 1, table
    verdict, detail = verdicts(findings)[check]
    assert verdict == preflight.FAIL, table
    for word in words:
        if word == "26 Hz":  # a tenth of 260 Hz, give or take a message on a busy machine
            rate = float(detail.split(" Hz")[0])
            assert 20 <= rate < 50, detail
        else:
            assert word in detail, detail
    assert received == {name: 0 for name in received}


@pytest.mark.slow
def test_an_inactive_controller_is_named_with_the_way_to_activate_it(ros_context, profile):
    findings, code, _ = run_on_standin(profile, states={"forward_kd_controller": "inactive"})
    verdict, detail = verdicts(findings)["forward_kd_controller"]
    assert verdict == preflight.WARN and "inactive" in detail
    fix = next(f.fix for f in findings if f.check == "forward_kd_controller")
    assert "activate_controllers:=true" in fix and "switch_controllers" in fix


@pytest.mark.slow
def test_guided_checks_pass_on_a_healthy_standin(ros_context, profile):
    findings, code, received = run_on_standin(profile, guided=True)
    table = preflight.table(findings)
    assert code == 0, table
    found = verdicts(findings)
    assert found["imu frame"][0] == preflight.PASS
    for foot in profile.feet:
        assert found[f"{preflight.foot_words(foot)} leg"][0] == preflight.PASS, table
    assert received == {name: 0 for name in received}


@pytest.mark.slow
def test_guided_checks_name_a_reversed_knee_and_an_imu_turned_about_z(ros_context, profile):
    """A turn of the IMU about z does not show at rest (gravity stays on z): the nose-up step finds it."""
    findings, code, _ = run_on_standin(profile, faults={"flipped": ["leg_back_r_3"], "imu_yaw_degrees": 90}, guided=True)
    table = preflight.table(findings)
    found = verdicts(findings)
    assert code == 1
    assert found["imu at rest"][0] == preflight.PASS, table  # invisible at rest ...
    assert found["imu frame"][0] == preflight.FAIL and "+90 deg about z" in found["imu frame"][1], table  # ... not tilted
    assert found["back right leg"][0] == preflight.FAIL and "reversed: leg_back_r_3" in found["back right leg"][1], table
    assert found["front right leg"][0] == preflight.PASS, table


def test_an_imu_turned_about_x_is_named_at_rest():
    """At rest the check sees a frame turned about a horizontal axis: 90 degrees about x puts gravity on y."""
    turned = np.array([math.sin(math.pi / 4), 0.0, 0.0, math.cos(math.pi / 4)])
    recording = preflight.Recording(np.zeros((1, 12)), turned[None, :], np.zeros((1, 3)), 1.0)
    finding = next(f for f in preflight.check_imu(recording) if f.check == "imu at rest")
    assert finding.verdict == preflight.FAIL and "90 deg" in finding.detail


# --- serial: the firmware emulator on a pseudo-terminal ---------------------------------------------------------
def run_on_emulator(tmp_path, profile, faults=None):
    emulator = FirmwareEmulator(profile, link=tmp_path / "tty", sensor_faults=SensorFaults.from_dict(faults))
    emulator.start()
    try:
        args = preflight.build_parser().parse_args(["--backend", "serial", "--port", emulator.port, "--seconds", "1"])
        findings, code = preflight.run(args)
    finally:
        emulator.stop()
    return findings, code, emulator


@pytest.mark.slow
def test_serial_healthy_passes_with_the_motors_idle(tmp_path, profile):
    findings, code, emulator = run_on_emulator(tmp_path, profile)
    assert code == 0, preflight.table(findings)
    assert emulator.max_kp == 0.0  # idle at open, damping (kp 0) at close: nothing that holds a pose


@pytest.mark.slow
@pytest.mark.parametrize(
    "faults, check, word",
    [({"offset": {"leg_front_l_1": -MOTOR_TURN}}, "rest pose", "-1 motor turn"),
     ({"rate_divisor": 10}, "status rate", "needs 50 Hz")],
    ids=["one motor turn off", "a tenth of the rate"],
)
def test_serial_wiring_faults_are_named(tmp_path, profile, faults, check, word):
    findings, code, emulator = run_on_emulator(tmp_path, profile, faults)
    verdict, detail = verdicts(findings)[check]
    assert code == 1 and verdict == preflight.FAIL and word in detail, preflight.table(findings)
    assert emulator.max_kp == 0.0


@pytest.mark.slow
def test_the_command_line_writes_its_table_and_json(tmp_path, profile):
    emulator = FirmwareEmulator(profile, link=tmp_path / "tty")
    emulator.start()
    try:
        report = tmp_path / "preflight.json"
        proc = subprocess.run([sys.executable, "-m", "pupper_ros.ros.preflight", "--backend", "serial", "--port",
                               emulator.port, "--seconds", "1", "--json", str(report)],
                              capture_output=True, text=True, timeout=60)
    finally:
        emulator.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASSED" in proc.stdout and "rest pose" in proc.stdout
    saved = json.loads(report.read_text())
    assert saved["exit_code"] == 0 and {f["check"] for f in saved["findings"]} >= {"joints", "rest pose", "status rate"}


@pytest.mark.slow
def test_an_absent_robot_is_a_clear_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pupper_ros.ros.preflight", "--backend", "serial", "--port",
                           str(tmp_path / "no-such-tty")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no such device" in proc.stdout and "ROBOT NOT REACHED" in proc.stdout
