"""pupper-replay: a flight log recorded through the real daemon, replayed against the policy and both simulators."""

import os
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from geometry_msgs.msg import Twist

from pupper_ros import resources
from pupper_ros.flight_log.reader import FlightLogError, read_flight_log
from pupper_ros.flight_log.recorder import FlightRecorder
from pupper_ros.policy import load_policy
from pupper_ros.flight_log.replay import (logged_policy_path, main, replay_closed_loop, replay_open_loop, replay_policy,
                               load_replay_policy)
from pupper_ros.backends.io import JointCommand, SensorSample
from pupper_ros.safety import State
from tests.policies import write_policy
from tests.ros_helpers import RosHarness, WalkClient, stop_process, wait_until

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

WALK = [sys.executable, "-m", "pupper_ros.ros.walk"]
# Same engine, same robot: what remains is the start the log does not hold (body height, contacts). Measured
# 0.007-0.009 rad over all joints, 0.015 for the worst joint, in 20-250 s logs.
OPEN_LOOP_RMS_RAD = 0.015
OPEN_LOOP_WORST_JOINT_RMS_RAD = 0.025


def drive(watch: WalkClient, vx: float, seconds: float) -> None:
    """Publish vx every 5 ms of wall clock: a lock-step daemon runs several times faster than real time, and the
    supervisor's command timeout (0.5 s) counts simulated seconds."""
    twist = Twist()
    twist.linear.x = vx
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        watch.cmd.publish(twist)
        watch.ros.spin_for(0.005)


def record_walk(path, lockstep: bool, walk_seconds: float, sig=signal.SIGTERM):
    """Run the daemon with the recorder, stand up, walk forward at 0.3 m/s, then stop it with ``sig``."""
    ros = RosHarness()
    proc = subprocess.Popen(WALK + ["--record-log", str(path)] + (["--lockstep"] if lockstep else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        watch = WalkClient(ros)
        assert ros.spin_until(lambda: watch.state == "WALKING", timeout=60), (watch.states, proc.poll())
        drive(watch, 0.3, walk_seconds)
        if sig == signal.SIGKILL:
            proc.kill()
            proc.wait()
        else:
            assert stop_process(proc, sig) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ros.close()
    return path


@pytest.fixture(scope="module")
def walk_log(tmp_path_factory):
    """A lock-step run (a few simulated seconds of standing up, then walking) stopped by SIGTERM."""
    return record_walk(tmp_path_factory.mktemp("replay") / "walk.mcap", lockstep=True, walk_seconds=1.5)


def test_a_sigterm_log_is_complete_and_holds_the_run(walk_log, profile):
    log = read_flight_log(walk_log)
    assert log.complete and log.end == ""
    assert log.joints == list(profile.joints) and log.header["backend"] == "sim"
    assert [s for _, s in log.states][-1] == "DAMPING" and "WALKING" in [s for _, s in log.states]
    assert log.ticks > 100 and len(log.policy_time) > 50
    assert np.any(log.cmd_vel[:, 0] == 0.3)


def test_the_logged_policy_reproduces_its_actions_exactly(walk_log, profile, tmp_path, capsys):
    assert main([str(walk_log), "--policy", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(the logged policy)" in out and "reproduces the logged actions exactly" in out
    assert (tmp_path / "policy_actions.png").stat().st_size > 0
    log = read_flight_log(walk_log)
    result = replay_policy(log, load_replay_policy(log, profile, None))
    assert result.same_policy and result.steps == len(log.observation)
    assert np.all(result.max_difference == 0.0) and result.first_divergence is None


def test_another_policy_shows_where_it_diverges(walk_log, profile, tmp_path, capsys):
    other = write_policy(tmp_path / "other.onnx", profile)
    assert main([str(walk_log), "--policy", str(other)]) == 0  # a comparison, not a failure
    out = capsys.readouterr().out
    assert "(another policy)" in out and "diverges from the logged actions 0.000 s after the first policy step" in out
    result = replay_policy(read_flight_log(walk_log), load_policy(other, profile))
    assert not result.same_policy and result.first_divergence == 0.0 and np.all(result.max_difference > 1e-6)


def test_open_loop_in_the_same_engine_reproduces_the_logged_joint_positions(walk_log, tmp_path, capsys):
    log = read_flight_log(walk_log)
    result = replay_open_loop(log, "pybullet")
    assert len(result.time) == log.ticks - 1
    rms = dict(zip(log.joints, result.joint_rms.round(4)))
    assert np.sqrt(np.mean(result.joint_rms ** 2)) < OPEN_LOOP_RMS_RAD, rms
    assert np.all(result.joint_rms < OPEN_LOOP_WORST_JOINT_RMS_RAD), rms
    # The replay follows the log rather than holding still: the logged joints move far more than the RMS.
    assert np.all(log.joint_position.std(axis=0) > 2 * result.joint_rms)
    assert main([str(walk_log), "--open-loop", "--engine", "pybullet", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "open loop in pybullet" in out and all(name in out for name in log.joints)
    assert {p.name for p in tmp_path.iterdir()} == {"open_loop_joints.png", "open_loop_body_rates.png"}


def test_open_loop_in_the_other_engine_reports_its_figure(walk_log, capsys):
    """A PyBullet log replayed in MuJoCo: the cross-engine mismatch is reported, not bounded."""
    assert main([str(walk_log), "--open-loop", "--engine", "mujoco"]) == 0
    out = capsys.readouterr().out
    table = out.split("open loop in mujoco")[1].splitlines()
    rows = {line.split()[0]: float(line.split()[-1]) for line in table[2:] if line.split()[0].startswith("leg_")}
    assert len(rows) == 12 and all(np.isfinite(v) and v > 0.0 for v in rows.values())


def test_closed_loop_in_the_same_engine_is_the_logged_run_until_the_command_changes(walk_log, tmp_path, capsys):
    log = read_flight_log(walk_log)
    result = replay_closed_loop(log, "pybullet")
    # Lock-step simulation is deterministic: with the same start, controller, policy and supervisor the replay is
    # the logged run itself, up to the first new velocity command (whether a command that arrived during a tick took
    # effect at that tick or the next is not in the log).
    first_change = log.cmd_vel_time[np.flatnonzero(np.any(log.cmd_vel != 0.0, axis=1))[0]]
    before = log.tick_time <= first_change
    assert before.sum() > 50
    assert np.array_equal(result.joint_position[before], log.joint_position[before])
    assert np.array_equal(result.body_rate[before], log.angular_velocity[before])
    forward = [v for v in result.velocity if v[2][0] == 0.3]
    assert forward and all(np.isfinite(v[3]).all() for v in forward)
    assert main([str(walk_log), "--closed-loop", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "closed loop in pybullet" in out and "commanded vx vy yaw" in out and "  0.30 " in out
    assert (tmp_path / "closed_loop_velocity.png").stat().st_size > 0


def test_a_daemon_killed_outright_still_leaves_a_finished_log(tmp_path, capsys):
    """SIGKILL gives the daemon no chance to close the log; its writer process finishes it when its input ends."""
    path = record_walk(tmp_path / "killed.mcap", lockstep=False, walk_seconds=3.0, sig=signal.SIGKILL)

    def finished():
        try:
            return read_flight_log(path).complete
        except FlightLogError:
            return False

    assert wait_until(finished)
    log = read_flight_log(path)
    assert [s for _, s in log.states][-1] == "WALKING"  # no damping was sent: the log ends where the daemon died
    assert np.any(log.cmd_vel[:, 0] == 0.3)
    assert main([str(path), "--policy"]) == 0
    assert "reproduces the logged actions exactly" in capsys.readouterr().out


def test_a_log_cut_short_reads_up_to_its_last_chunk_and_says_where_it_ends(walk_log, tmp_path, capsys):
    """A power loss mid-run: the file as far as it reached the disk."""
    data = walk_log.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    log = read_flight_log(cut)
    assert not log.complete and 0 < log.ticks < read_flight_log(walk_log).ticks
    assert f"{len(data) // 2:,} bytes" in log.end and "ticks, up to" in log.end
    assert main([str(cut), "--policy"]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "is cut" in captured.err
    assert "reproduces the logged actions exactly" in captured.out
    nothing = tmp_path / "nothing.mcap"
    nothing.write_bytes(data[:20])  # inside the first record
    with pytest.raises(FlightLogError, match="cut before its first complete chunk"):
        read_flight_log(nothing)


def test_a_file_that_is_not_a_flight_log_gets_a_clear_error(tmp_path, capsys):
    text = tmp_path / "notes.mcap"
    text.write_text("these are not the bytes you are looking for\n")
    assert main([str(text), "--policy"]) == 2
    assert "is not an MCAP file" in capsys.readouterr().err

    from mcap_ros2.writer import Writer

    from pupper_ros.flight_log.recorder import message_definition

    other = tmp_path / "chatter.mcap"
    with open(other, "wb") as f:
        writer = Writer(f)
        schema = writer.register_msgdef("std_msgs/msg/String", message_definition("std_msgs/msg/String"))
        writer.write_message(topic="/chatter", schema=schema, message={"data": "hello"}, log_time=0, publish_time=0)
        writer.finish()
    assert main([str(other), "--open-loop"]) == 2
    assert "not a pupper_ros flight log" in capsys.readouterr().err

    assert main([str(tmp_path / "missing.mcap"), "--policy"]) == 2
    assert "cannot read" in capsys.readouterr().err


def _short_log(path, profile, policy, ticks: int = 5):
    recorder = FlightRecorder(path, profile, policy, {}, "sim")
    n = profile.num_joints
    controller = types.SimpleNamespace(
        sample=SensorSample(0.0, profile.default_pose.copy(), np.zeros(n), np.array([0.0, 0.0, 0.0, 1.0]), np.zeros(3)),
        command=JointCommand(n), ran_policy=True, last_observation=np.zeros(policy.contract.observation_size, np.float32),
        last_raw_action=np.zeros(n, np.float32), state=State.WALKING)
    for tick in range(ticks):
        controller.last_raw_action = policy(controller.last_observation).copy()
        recorder.record_tick(tick * 0.02, controller)
    recorder.close()
    return path


def test_the_logged_policy_is_found_by_digest_when_its_file_has_moved(tmp_path, profile, capsys):
    moved = tmp_path / "moved.onnx"
    shutil.copy(resources.default_policy_path(profile.name), moved)
    log_path = _short_log(tmp_path / "short.mcap", profile, load_policy(moved, profile))
    moved.unlink()
    assert logged_policy_path(read_flight_log(log_path)) == resources.default_policy_path(profile.name)

    unknown = write_policy(tmp_path / "gone.onnx", profile)
    log_path = _short_log(tmp_path / "unknown.mcap", profile, load_policy(unknown, profile))
    unknown.unlink()
    assert main([str(log_path), "--policy"]) == 2
    assert "is not on this machine: pass the file with --policy" in capsys.readouterr().err


def test_the_replay_command_is_installed():
    script = shutil.which("pupper-replay", path=os.path.dirname(sys.executable))
    assert script is not None
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--open-loop" in result.stdout and "--closed-loop" in result.stdout
