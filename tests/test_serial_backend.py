"""The serial path end to end: pupper-walk --backend serial as a subprocess, talking through a real pseudo-terminal
to the firmware emulator (the Teensy's side of the protocol over the PyBullet model). Faults are injected on the wire."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import serial

from pupper_ros.backends import BackendError
from pupper_ros.backends.serial_backend import SerialBackend
from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.safety import joint_speed_limit
from pupper_ros.sim.firmware_emulator import FirmwareEmulator
from tests.policies import standing_network, write_policy
from tests.ros_helpers import EVENTUALLY_S, WalkClient, assert_walks_forward, wait_until
from tests.shipped import forward_speed_0_3, mean_forward_speed

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

TICK = CURRENT_CONTRACT.control_period



def has_sample(backend) -> bool:
    return backend.latest_sample(time.monotonic()) is not None


@pytest.fixture
def emulator(tmp_path, profile):
    emu = FirmwareEmulator(profile, link=tmp_path / "tty")
    emu.start()
    yield emu
    emu.stop()


def start_walk(port, policy=None, robot=None):
    args = [sys.executable, "-m", "pupper_ros.ros.walk", "--backend", "serial", "--port", str(port)]
    if robot is not None:
        args += ["--robot", robot]
    if policy is not None:
        args += ["--policy", str(policy)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def assert_inside_envelope(emu, profile, margin=0.05):
    # inside the limits less the margin, or, for a joint that rested past them when a stand-up began, between
    # there and the limits (the supervisor brings such a joint in from where it is)
    assert np.all(emu.target_low >= np.minimum(profile.lower_limits + margin, emu.start_low) - 1e-6)
    assert np.all(emu.target_high <= np.maximum(profile.upper_limits - margin, emu.start_high) + 1e-6)
    assert emu.max_abs_target_step <= joint_speed_limit(profile, TICK) * TICK + 1e-6  # the node's default per-tick limit
    assert emu.max_kp <= profile.kp_max + 1e-6 and emu.max_kd <= profile.kd_max + 1e-6


@pytest.fixture(scope="module")
def standing_policy(tmp_path_factory, profile):
    return write_policy(tmp_path_factory.mktemp("serial") / "stand.onnx", profile, standing_network())


def test_motors_stay_idle_until_activation_and_close_sends_damping(emulator, profile):
    backend = SerialBackend(profile, TICK, port=str(emulator.port))
    backend.open()
    assert wait_until(lambda: has_sample(backend))  # status frames flow while idle
    time.sleep(0.3)  # a window in which nothing may command the motors
    assert emulator.idle and emulator.commands_received == 0
    backend.close()
    assert wait_until(lambda: emulator.commands_received > 0)
    assert emulator.commands_received == 1 and emulator.max_kp == 0.0 and emulator.max_kd > 0  # damping, not a jump


def test_close_damps_with_the_damping_kd_parameter(emulator, profile):
    """Finding 9 of the fail-closed review: close sent kd 0.1 whatever damping_kd said."""
    backend = SerialBackend(profile, TICK, port=str(emulator.port), damping_kd=0.4)
    backend.open()
    assert wait_until(lambda: has_sample(backend))
    backend.close()
    assert wait_until(lambda: emulator.commands_received > 0)
    assert emulator.max_kp == 0.0 and emulator.max_kd == pytest.approx(0.4)


def test_a_missing_port_is_named_clearly(profile, tmp_path):
    backend = SerialBackend(profile, TICK, port=str(tmp_path / "ttyACM9"))
    with pytest.raises(BackendError, match="no such device"):
        backend.open()


def test_a_busy_port_is_named_clearly(emulator, profile):
    holder = serial.Serial(str(emulator.port), exclusive=True)
    try:
        with pytest.raises(BackendError, match="busy"):
            SerialBackend(profile, TICK, port=str(emulator.port)).open()
    finally:
        holder.close()


@pytest.mark.parametrize("fault", ["garbage", "truncated", "oversized", "bad_msgpack", "missing_keys", "short_arrays", "nan"])
def test_a_single_bad_frame_is_dropped_and_counted_without_a_fault(emulator, profile, fault):
    backend = SerialBackend(profile, TICK, port=str(emulator.port))
    backend.open()

    def dropped():
        return backend.decoder.dropped + backend.decoder.resyncs

    def latest_stamp():
        return backend.latest_sample(time.monotonic()).stamp

    try:
        assert wait_until(lambda: has_sample(backend))
        dropped_before = dropped()
        emulator.inject(fault)
        assert wait_until(lambda: dropped() > dropped_before), f"the {fault} frame was not counted"
        for _ in range(3):  # newer samples keep arriving after the bad frame
            stamp = latest_stamp()
            assert wait_until(lambda: latest_stamp() > stamp), f"no sample after the {fault} frame"
        assert backend.diagnostics()["serial connected"] == "True"
    finally:
        backend.close()


def clear_fault_once_frames_flow(operator, ros):
    """~/clear_fault, asked again until the link is healthy (it is refused while no fresh frames arrive)."""
    deadline = time.monotonic() + EVENTUALLY_S
    while not (result := operator.clear_fault()).success and time.monotonic() < deadline:
        ros.spin_for(0.3)
    return result


def test_walk_over_serial_survives_bad_frames_and_recovers_from_stall_and_unplug(emulator, ros, profile, standing_policy):
    proc = start_walk(emulator.port, standing_policy)
    operator = WalkClient(ros)
    try:
        assert operator.wait_state("WALKING"), (operator.states, proc.poll())
        height = emulator.ground_truth().base_position[2]
        assert height > 0.13, f"not standing: base at {height:.3f} m"
        for fault in ("garbage", "truncated", "oversized", "bad_msgpack", "missing_keys", "short_arrays", "nan"):
            emulator.inject(fault)
            ros.spin_for(0.1)
        ros.spin_for(0.5)
        assert operator.state == "WALKING" and proc.poll() is None

        # Longer than the 0.1 s sensor timeout: only a fault latched while the link is silent reaches DAMPING.
        emulator.inject("stall", 0.5)
        assert operator.wait_state("DAMPING", EVENTUALLY_S)
        result = clear_fault_once_frames_flow(operator, ros)
        assert result.success, result.message
        assert operator.wait_state("WALKING")

        emulator.inject("unplug")
        assert operator.wait_state("DAMPING", EVENTUALLY_S)
        refused = operator.clear_fault()
        assert not refused.success  # no fresh frames while unplugged
        emulator.inject("replug")
        result = clear_fault_once_frames_flow(operator, ros)
        assert result.success, result.message
        assert operator.wait_state("WALKING")
        assert proc.poll() is None
        assert_inside_envelope(emulator, profile)
    finally:
        code = stop(proc)
        output = proc.stdout.read()
    assert code == 0, output


def test_walks_forward_over_serial(emulator, ros, profile):
    proc = start_walk(emulator.port)
    operator = WalkClient(ros)
    try:
        if not operator.wait_state("WALKING"):
            stop(proc)
            pytest.fail(f"states {operator.states}; pupper-walk said:\n{proc.stdout.read()}")
        assert_walks_forward(operator, forward_speed_0_3(), measure=lambda: emulator.ground_truth().base_linear_velocity[0])
        assert_inside_envelope(emulator, profile)
    finally:
        stop(proc)


def test_pupper_v2_walks_its_shipped_policy_forward_over_serial(ros, tmp_path):
    """Pupper v2 end to end: its default policy, its firmware layout and its 0.5 ms physics behind the emulator. The
    walk is checked against what the policy's own evaluation measured for the same command (forward_0.2)."""
    from pupper_ros.robot_profile import load_robot_profile

    v2 = load_robot_profile("pupper_v2")
    emu = FirmwareEmulator(v2, link=tmp_path / "tty-v2")
    emu.start()
    proc = start_walk(emu.port, robot="pupper_v2")
    operator = WalkClient(ros)
    try:
        if not operator.wait_state("WALKING"):
            stop(proc)
            pytest.fail(f"states {operator.states}; pupper-walk said:\n{proc.stdout.read()}")
        assert_walks_forward(operator, mean_forward_speed("pupper_v2", "forward_0.2"), vx=0.2,
                             measure=lambda: emu.ground_truth().base_linear_velocity[0])
        assert_inside_envelope(emu, v2)
    finally:
        stop(proc)
        emu.stop()


def test_pupper_v2_joints_cross_the_link_by_name_with_the_firmware_directions(tmp_path):
    """The v2 profile's firmware layout (3 x 4 column-major, abduction signs flipped on the right legs): a pose set
    in the emulator's model arrives in profile order, and a command arrives as the same joint targets."""
    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.backends.io import JointCommand

    v2 = load_robot_profile("pupper_v2")
    emu = FirmwareEmulator(v2, link=tmp_path / "tty-v2", realtime=True)
    pose = v2.default_pose + np.linspace(-0.2, 0.2, 12)
    with emu.lock:
        emu.sim.reset(joint_position=pose, base_height=0.5)  # in the air: nothing moves the joints
    emu.sim.set_gravity([0, 0, 0])
    emu.start()
    backend = SerialBackend(v2, TICK, port=str(emu.port))
    backend.open()
    try:
        assert wait_until(lambda: has_sample(backend))
        sample = backend.latest_sample(time.monotonic())
        np.testing.assert_allclose(sample.joint_position, pose, atol=1e-3)
        command = JointCommand(12)
        command.position[:] = pose + 0.05
        command.kp[:] = 1.0
        command.kd[:] = 0.1
        backend.write(command, time.monotonic())
        assert wait_until(lambda: emu.commands_received > 0)
        with emu.lock:
            np.testing.assert_allclose(emu.sim.targets, pose + 0.05, atol=1e-5)
            assert emu.sim.kp[0] == pytest.approx(1.0, rel=1e-5)  # A/rad on the wire, Nm/rad again at the joint
    finally:
        backend.close()
        emu.stop()
