"""The flight recorder: the real daemon writes every control tick to an MCAP file that a standard reader reads back."""

import json
import os
import resource
import signal
import subprocess
import sys
import types

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.reader import read_ros2_messages

from pupper_ros import resources
from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.flight_log.reader import iter_messages
from pupper_ros.flight_log.recorder import FlightRecorder, RecorderError, file_digest
from pupper_ros.flight_log.schema import (ACTION, DIAGNOSTICS, HEADER_TOPIC, IMU, JOINT_COMMANDS, JOINT_STATES, OBSERVATION,
                                          STATE)
from pupper_ros.policy import load_policy
from pupper_ros.backends.io import JointCommand, SensorSample
from pupper_ros.safety import State
from tests.ros_helpers import WalkClient, stop_process

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

WALK = [sys.executable, "-m", "pupper_ros.ros.walk"]


def read_log(path):
    messages = {}
    for m in read_ros2_messages(str(path)):
        messages.setdefault(m.channel.topic, []).append(m)
    return messages


def test_a_demo_run_records_every_tick_and_the_policy_reproduces_its_logged_actions(tmp_path, profile):
    log = tmp_path / "run.mcap"
    result = subprocess.run(WALK + ["--demo", "--lockstep", "--record-log", str(log)], capture_output=True, text=True,
                            timeout=600, env=os.environ.copy())
    assert result.returncode == 0, result.stderr[-2000:]
    messages = read_log(log)

    header = json.loads(messages[HEADER_TOPIC][0].ros_msg.data)
    shipped = resources.default_policy_path(profile.name)
    assert header["policy"]["sha256"] == file_digest(shipped)
    assert header["robot"] == profile.name and header["backend"] == "sim"
    assert header["parameters"]["record_log"] == str(log)
    assert header["profile"]["joints"] == list(profile.joints)
    diagnostics = {kv.key: kv.value for kv in messages[DIAGNOSTICS][-1].ros_msg.status[0].values}
    assert diagnostics["records dropped"] == "0" and diagnostics["recorder error"] == "none"

    ticks = int(result.stdout.split("loop: ")[1].split()[0])  # counted when the demo printed its summary
    commands = messages[JOINT_COMMANDS]
    assert len(commands) >= ticks + 1  # the loop's ticks, then the damping command sent after the loop stops
    assert len(messages[JOINT_STATES]) == len(messages[IMU]) == len(commands)
    # Lock-step ticks are one control period apart on the simulated clock: none is missing from the log.
    times = np.array([m.log_time_ns for m in commands[:-1]])
    assert np.all(np.abs(np.diff(times) - 20_000_000) <= 1_000), np.unique(np.diff(times))
    assert commands[-1].log_time_ns >= times[-1]
    assert messages[JOINT_STATES][0].ros_msg.name == list(profile.joints)
    assert [m.ros_msg.data for m in messages[STATE]][-1] == "DAMPING"
    assert list(commands[-1].ros_msg.velocity) == [0.0] * profile.num_joints  # kp 0: damping

    observations, actions = messages[OBSERVATION], messages[ACTION]
    assert len(observations) == len(actions) > 0
    labels = [d.label for d in observations[0].ros_msg.layout.dim]
    assert labels == [t.name for t in CURRENT_CONTRACT.terms]
    assert [d.label for d in actions[0].ros_msg.layout.dim] == list(profile.joints)
    policy = load_policy(shipped, profile)
    worst = 0.0
    for observation, action in zip(observations, actions):
        replayed = policy(np.asarray(observation.ros_msg.data, dtype=np.float32))
        worst = max(worst, float(np.max(np.abs(replayed - np.asarray(action.ros_msg.data, dtype=np.float32)))))
    assert worst == 0.0


def topics_in(path) -> set:
    """The topics of every message readable in a file that may have no summary or footer."""
    return {topic for topic, _, _ in iter_messages(path) if topic}


def fake_controller(profile, state=State.STANDING_UP, sample=True):
    n = profile.num_joints
    reading = SensorSample(0.0, profile.default_pose.copy(), np.zeros(n), np.array([0.0, 0.0, 0.0, 1.0]), np.zeros(3))
    return types.SimpleNamespace(sample=reading if sample else None, command=JointCommand(n), ran_policy=False,
                                 last_observation=None, last_raw_action=None, state=state)


def test_a_full_pipe_drops_and_counts_records_while_every_tick_returns(tmp_path, profile):
    policy = load_policy(resources.default_policy_path(profile.name), profile)
    recorder = FlightRecorder(tmp_path / "full.mcap", profile, policy, {}, "sim", buffer_bytes=4096)
    os.kill(recorder._process.pid, signal.SIGSTOP)  # a writer that stops reading, as behind a disk that hangs
    try:
        controller = fake_controller(profile)
        ticks = 200
        for tick in range(ticks):  # a tick is 3 records (joint states, IMU, command); the first adds the state
            recorder.record_tick(tick * 0.02, controller)
        dropped_ticks = recorder.dropped // 3
        assert recorder.dropped == 3 * dropped_ticks and 0 < dropped_ticks < ticks
    finally:
        os.kill(recorder._process.pid, signal.SIGCONT)
    recorder.close()
    assert recorder.error == ""
    messages = read_log(tmp_path / "full.mcap")
    # A tick is handed over whole or not at all: the file holds exactly the ticks that were not dropped.
    assert len(messages[JOINT_COMMANDS]) == len(messages[JOINT_STATES]) == ticks - dropped_ticks


def test_a_dead_writer_stops_recording_not_the_caller(tmp_path, profile):
    policy = load_policy(resources.default_policy_path(profile.name), profile)
    recorder = FlightRecorder(tmp_path / "dead.mcap", profile, policy, {}, "sim")
    recorder._process.kill()
    recorder._process.wait()
    controller = fake_controller(profile)
    for tick in range(20):
        recorder.record_tick(tick * 0.02, controller)
    recorder.close()
    assert "Broken pipe" in recorder.error and recorder.dropped > 0
    assert HEADER_TOPIC in topics_in(tmp_path / "dead.mcap")  # written before the first tick


def walk_then_sigterm(ros, args: list[str]) -> None:
    """pupper-walk with ``args`` until it walks, then SIGTERM; it must exit 0."""
    proc = subprocess.Popen(WALK + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        watch = WalkClient(ros)
        assert ros.spin_until(lambda: watch.state == "WALKING", timeout=30), (watch.states, proc.poll())
        assert stop_process(proc, signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_mid_run_leaves_a_complete_file_ending_in_damping(ros, tmp_path, profile):
    log = tmp_path / "walk.mcap"
    walk_then_sigterm(ros, ["--backend", "sim", "--record-log", str(log)])
    with open(log, "rb") as f:
        summary = make_reader(f).get_summary()  # a finished file has a summary section with its statistics
    assert summary is not None and summary.statistics.message_count > 0
    messages = read_log(log)
    assert [m.ros_msg.data for m in messages[STATE]][-2:] == ["WALKING", "DAMPING"]
    assert list(messages[JOINT_COMMANDS][-1].ros_msg.velocity) == [0.0] * profile.num_joints


def test_a_robots_log_is_in_ros_time_and_replays_on_the_loops_clock(ros, tmp_path, profile):
    """Over the serial link (the firmware emulator on a pseudo-terminal, as a robot): every message's log time and
    header stamp is ROS time (the node's clock: the calendar), so Foxglove and rosbag place the run beside a
    `ros2 bag record` of it; the reader takes the header's offset off again, so ticks come back on the loop's
    monotonic clock and pupper-replay reproduces the logged actions. A simulated log keeps simulation time
    (test_a_demo_run_records_every_tick...: lock-step ticks from zero)."""
    import time

    from pupper_ros.flight_log.reader import read_flight_log
    from pupper_ros.sim.firmware_emulator import FirmwareEmulator

    emulator = FirmwareEmulator(profile, link=tmp_path / "tty")
    emulator.start()
    log = tmp_path / "robot.mcap"
    started_wall, started_monotonic = time.time_ns(), time.monotonic()
    try:
        walk_then_sigterm(ros, ["--backend", "serial", "--port", emulator.port, "--record-log", str(log)])
    finally:
        emulator.stop()
    ended_wall, ended_monotonic = time.time_ns(), time.monotonic()
    messages = read_log(log)
    header = json.loads(messages[HEADER_TOPIC][0].ros_msg.data)
    assert header["clock"]["source"] == "ros" and header["clock"]["offset_ns"] > 0
    for topic in (HEADER_TOPIC, JOINT_STATES, JOINT_COMMANDS, STATE):
        for m in messages[topic]:
            assert started_wall <= m.log_time_ns <= ended_wall, topic
    stamp = messages[JOINT_COMMANDS][0].ros_msg.header.stamp
    assert started_wall <= stamp.sec * 1_000_000_000 + stamp.nanosec <= ended_wall
    flight = read_flight_log(log)
    assert started_monotonic <= flight.tick_time[0] <= flight.tick_time[-1] <= ended_monotonic
    replay = subprocess.run([sys.executable, "-m", "pupper_ros.flight_log.replay", str(log), "--policy"], capture_output=True,
                            text=True, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_an_unwritable_log_path_fails_configure_naming_the_parameter(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(WALK + ["--demo", "--lockstep", "--record-log", str(blocker / "run.mcap")],
                            capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert result.returncode != 0
    assert "record_log" in result.stderr + result.stdout and str(blocker / "run.mcap") in result.stderr + result.stdout


def test_a_disk_error_stops_recording_not_the_caller_and_close_still_returns(tmp_path, profile):
    policy = load_policy(resources.default_policy_path(profile.name), profile)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limit[1]))  # the writer inherits a 64 KiB file-size limit
    try:
        recorder = FlightRecorder(tmp_path / "full_disk.mcap", profile, policy, {}, "sim")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    controller = fake_controller(profile, state=State.WALKING)
    for tick in range(3000):  # 60 s of log, a chunk a second: far more than 64 KiB
        recorder.record_tick(tick * 0.02, controller)
    recorder.close()  # returns although the writer could not finish the file
    assert "File too large" in recorder.error
    assert recorder.dropped > 0 and recorder.status()["recorder error"] == recorder.error
    assert {HEADER_TOPIC, JOINT_COMMANDS} <= topics_in(tmp_path / "full_disk.mcap")  # what got out is readable


def test_a_log_on_a_full_disk_fails_at_once_naming_the_file(profile):
    """/dev/full takes the open but fails every write: the header cannot be written, so recording cannot start."""
    policy = load_policy(resources.default_policy_path(profile.name), profile)
    with pytest.raises(RecorderError, match="cannot write the flight log /dev/full: OSError: .*No space left on device"):
        FlightRecorder("/dev/full", profile, policy, {}, "sim")
