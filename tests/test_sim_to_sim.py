"""Sim-to-sim: the shipped policy through the runtime (controller, safety, simulated backend, lock-step) walks as
it does in the training environment. A gap means the runtime builds a different observation than training."""

import numpy as np

from pupper_ros import resources
from pupper_ros.backends.sim_backend import SimBackend
from pupper_ros.control_loop import ControlLoop
from pupper_ros.controller import Controller
from pupper_ros.policy import load_policy
from pupper_ros.safety import SafetyLimits, SafetySupervisor, State
from training.env import PupperEnv
from training.evaluate import run_episode

COMMAND = (0.3, 0.0, 0.0)
SECONDS = 10.0

def runtime_forward_speed(profile) -> float:
    policy = load_policy(resources.default_policy_path(), profile)
    period = policy.contract.control_period
    supervisor = SafetySupervisor(profile, SafetyLimits(control_period=period, tilt_limit=profile.tilt_limit),
                                  policy.info.command_low, policy.info.command_high)
    backend = SimBackend(profile, period, realtime=False)
    backend.open()
    controller = Controller(profile, policy, supervisor, backend, 1)
    loop = ControlLoop(controller, period, lockstep=True)
    assert controller.activate(loop.now())
    loop.run_ticks(int(3.0 / period))  # stand up and fade in
    assert supervisor.state == State.WALKING
    velocities = []
    for _ in range(int(SECONDS / period)):
        controller.set_command(COMMAND, loop.now())
        loop.run_ticks(1)
        _, orientation, linear, _ = backend.ground_truth()
        x, y, z, w = orientation
        yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        velocities.append(np.cos(yaw) * linear[0] + np.sin(yaw) * linear[1])  # along the heading
    backend.close()
    assert supervisor.state == State.WALKING, supervisor.fault_reason
    return float(np.mean(velocities[int(1.0 / period):]))


def training_forward_speed(profile) -> float:
    env = PupperEnv(randomize=False)
    policy = load_policy(resources.default_policy_path(), profile)
    speeds = []
    for seed in range(3):
        result = run_episode(env, policy, COMMAND, SECONDS + 1.0, seed)
        assert not result.fell
        speeds.extend(np.array(result.trace["measured"])[:, 0])
    env.close()
    return float(np.mean(speeds))


def test_runtime_tracks_forward_like_the_training_environment(profile):
    runtime = runtime_forward_speed(profile)
    training = training_forward_speed(profile)
    assert abs(runtime - training) < 0.05, f"runtime {runtime:.3f} m/s, training env {training:.3f} m/s"
    assert runtime > 0.1
