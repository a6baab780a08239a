"""Sim-to-sim: each robot's shipped policy through the runtime (controller, safety, simulated backend, lock-step) walks as
it does in the training environment, for every command of the evaluation suite. A gap means the runtime builds a
different observation than training, or maps the actions differently.

Both sides run the nominal robot (no randomization) in PyBullet. The training side is the mean over three episodes
of ``pupper-eval``'s own measurement (1 s windows after 1 s of settling); the runtime side is one 10 s walk after
stand-up, measured from the simulator's ground truth in the heading frame.
"""

import numpy as np
import pytest

from pupper_ros import resources
from pupper_ros.assembly import assemble, parameter_values
from pupper_ros.policy import load_policy
from pupper_ros.safety import State
from tests.shipped import ROBOTS
from training.env import PupperEnv
from training.evaluate import SETTLE_SECONDS, command_suite, run_episode

pytestmark = pytest.mark.slow  # every test here starts a process, a real-time robot or a build

SECONDS = 10.0
TRAINING_EPISODES = 3
LINEAR_AGREEMENT = 0.05  # m/s, the figure
YAW_AGREEMENT = 0.1  # rad/s: half the bar's yaw tolerance


def _yaw(orientation) -> float:
    x, y, z, w = orientation
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def runtime_velocity(profile, command) -> np.ndarray:
    """Mean (vx, vy, yaw rate) in the heading frame while the runtime walks ``command`` for SECONDS."""
    policy = load_policy(resources.default_policy_path(profile.name), profile)
    runtime = assemble(profile, policy, parameter_values(sim_realtime=False))  # the daemon's defaults, lock-step
    supervisor, backend, controller, loop = runtime.supervisor, runtime.backend, runtime.controller, runtime.loop
    period = runtime.timing.period
    assert controller.activate(loop.now())
    loop.run_ticks(int(3.0 / period))  # stand up and fade in
    assert supervisor.state == State.WALKING
    velocities = []
    try:
        for _ in range(int(SECONDS / period)):
            controller.set_command(command, loop.now())
            loop.run_ticks(1)
            _, orientation, linear, angular = backend.ground_truth()
            yaw = _yaw(orientation)
            c, s = np.cos(yaw), np.sin(yaw)
            velocities.append((c * linear[0] + s * linear[1], -s * linear[0] + c * linear[1], angular[2]))
    finally:
        backend.close()
    assert supervisor.state == State.WALKING, supervisor.fault_reason
    return np.mean(velocities[int(SETTLE_SECONDS / period):], axis=0)


def training_velocity(profile, command) -> np.ndarray:
    from training.config import load_config

    env = PupperEnv(load_config(overrides={"robot": profile.name}), randomize=False)
    policy = load_policy(resources.default_policy_path(profile.name), profile)
    windows = []
    try:
        for seed in range(TRAINING_EPISODES):
            result = run_episode(env, policy, command, SECONDS + SETTLE_SECONDS, seed)
            assert not result.fell, f"the training environment fell on {command}"
            windows.extend(result.trace["measured"])
    finally:
        env.close()
    return np.mean(windows, axis=0)


def _cases():
    from pupper_ros.robot_profile import load_robot_profile

    return [(robot, name, command) for robot in ROBOTS for name, command in command_suite(load_robot_profile(robot)).items()]


@pytest.mark.slow
@pytest.mark.parametrize("robot, name, command", _cases(), ids=[f"{r}-{n}" for r, n, _ in _cases()])
def test_runtime_tracks_each_command_like_the_training_environment(robot, name, command):
    from pupper_ros.robot_profile import load_robot_profile

    profile = load_robot_profile(robot)
    runtime = runtime_velocity(profile, command)
    training = training_velocity(profile, command)
    linear_gap = float(np.linalg.norm(runtime[:2] - training[:2]))
    yaw_gap = abs(float(runtime[2] - training[2]))
    detail = f"{robot} {name}: runtime {np.round(runtime, 3)}, training env {np.round(training, 3)} (vx, vy, yaw rate)"
    assert linear_gap < LINEAR_AGREEMENT and yaw_gap < YAW_AGREEMENT, detail
    moving_axis = int(np.argmax(np.abs(command))) if any(command) else None
    if moving_axis is not None:  # and it does move: agreeing while standing still would prove nothing
        assert runtime[moving_axis] * np.sign(command[moving_axis]) > 0.5 * abs(command[moving_axis]), detail
