"""The batched training environment (training/batch_env.py) as the per-robot one: its randomization inside the
config's ranges, a robot whose physics goes non-finite reset and counted, and the shipped policy evaluated on the
batch walking as the per-robot evaluation measures it; rollouts collected on the batch's own thread."""

import numpy as np
import pytest

from training.batch_env import BatchedPupperEnv
from training.config import load_config

MUJOCO = {"env": {"engine": "mujoco", "batched": True}}


def test_randomization_stays_inside_the_configs_ranges():
    config = load_config(overrides=MUJOCO)
    r = config.randomization
    env = BatchedPupperEnv(config, 64, threads=1)
    profile = env.profile
    assert np.all((env.friction >= r.friction[0]) & (env.friction <= r.friction[1]))
    assert np.ptp(env.friction) > 0  # each robot its own
    kp_scale = env.sim.kp[:, 0] / profile.kp
    assert np.all((kp_scale >= r.kp_scale[0]) & (kp_scale <= r.kp_scale[1]))
    assert np.all((env.sim.motor_strength >= r.motor_strength[0]) & (env.sim.motor_strength <= r.motor_strength[1]))
    masses = env.sim.link_masses()
    nominal = env.sim.model.body_mass[env.sim.base_body]
    assert np.all((masses[:, 0] >= nominal * r.base_mass_scale[0] - 1e-12) & (masses[:, 0] <= nominal * r.base_mass_scale[1] + 1e-12))
    low, high = (round(x / env.physics_dt) for x in r.latency_seconds)
    assert np.all((env.latency_substeps >= low) & (env.latency_substeps <= high))
    commands = env.command
    assert np.all((commands >= profile.command_low) & (commands <= profile.command_high))
    assert np.mean(np.all(commands == 0, axis=1)) > 0  # some robots are asked to stand


def test_a_robot_whose_physics_goes_non_finite_is_reset_and_counted():
    env = BatchedPupperEnv(load_config(overrides=MUJOCO), 4, threads=1)
    env.sim.qvel[2, :] = np.nan
    _, rewards, terminated, _, _ = env.step(np.zeros((4, 12)))
    assert terminated[2] and not terminated[[0, 1, 3]].any()
    assert env.nonfinite_resets == 1 and np.isfinite(rewards).all()
    assert not env.sim.take_diverged().any() and env.steps[2] == 0


@pytest.mark.slow
def test_the_shipped_policy_evaluated_on_the_batch_walks_as_the_per_robot_evaluation_measures():
    """One forward and one turning command, 6 episodes of 6 s each, nominal dynamics: the batched MuJoCo evaluation
    and the per-robot one (the same policy, engine and config; initial poses, headings and gait phases drawn apart)
    agree on the measured speeds to within a tenth of the bar's tolerances' scale (0.03 m/s, 0.1 rad/s)."""
    from pupper_ros import resources
    from training.evaluate import _evaluate_command, evaluate_batched

    policy = str(resources.default_policy_path("pupper_v3"))
    commands = {"forward_0.3": (0.3, 0.0, 0.0), "turn_left_1": (0.0, 0.0, 1.0)}
    batched = evaluate_batched(commands, policy, 6, 6.0, False, 7, "pupper_v3", None, False)
    for name, command, results in batched:
        _, _, reference = _evaluate_command((name, command, policy, 6, 6.0, False, 7, "pupper_v3", "mujoco", None, False))
        assert not any(r.fell for r in results + reference)
        mean = np.mean([np.mean(r.trace["measured"], axis=0) for r in results], axis=0)
        expected = np.mean([np.mean(r.trace["measured"], axis=0) for r in reference], axis=0)
        print(f"{name}: batched {np.round(mean, 3)}, per robot {np.round(expected, 3)}")
        assert np.all(np.abs(mean[:2] - expected[:2]) < 0.03) and abs(mean[2] - expected[2]) < 0.1, (mean, expected)


def test_the_observations_a_step_returns_are_not_rewritten_by_the_next():
    """rsl_rl keeps the observations it acted on until the step is recorded; the builder's buffer is reused, so the
    environment must hand out copies (without, a 1.8 M-step run learnt nothing: each action was stored with the
    next step's observation)."""
    import torch

    from training.batch_vec_env import BatchVecEnv

    env = BatchVecEnv(load_config(overrides=MUJOCO | {"envs": 4}), threads=1)
    first, _, _, _ = env.step(torch.zeros(4, 12))
    kept = first["policy"].clone()
    env.step(torch.ones(4, 12))
    assert torch.equal(first["policy"], kept)


def _small_batch(robots: int = 4, **overrides):
    from training.batch_vec_env import BatchVecEnv

    config = load_config(overrides=MUJOCO | {"envs": robots, "policy": {"actor_hidden": [32], "critic_hidden": [32]}}
                         | overrides)
    return config, BatchVecEnv(config, threads=1)


def test_a_rollout_collected_on_the_batchs_thread_is_the_steps_the_environment_takes_in_the_foreground():
    """Training collects on a thread of its own (``start_rollout``); the same actions stepped one by one through
    ``step`` in a second batch with the same seed give the same observations, rewards, ends and time-outs."""
    import torch

    from training.actor_snapshot import take_snapshot
    from training.ppo_adapter import build_algorithm

    config, env = _small_batch()
    snapshot = take_snapshot(build_algorithm(config, env).actor)
    env.start_rollout(snapshot, 6)
    rollout = env.finish_rollout()
    _, twin = _small_batch()
    for t in range(6):
        np.testing.assert_array_equal(twin.get_observations()["policy"].numpy(), rollout.observations[t])
        _, rewards, dones, extras = twin.step(torch.from_numpy(rollout.actions[t]))
        np.testing.assert_array_equal(rewards.numpy(), rollout.rewards[t])
        np.testing.assert_array_equal(dones.numpy().astype(bool), rollout.dones[t])
        np.testing.assert_array_equal(extras["time_outs"].numpy().astype(bool), rollout.time_outs[t])
    np.testing.assert_array_equal(twin.get_observations()["policy"].numpy(), rollout.last_observations)
    for t in range(6):  # acted with the snapshot: its means, with the Gaussian noise added
        np.testing.assert_array_equal(rollout.action_means[t], snapshot.mean_action(rollout.observations[t]))
    assert np.all(rollout.actions != rollout.action_means)
    env.start_rollout(snapshot, 1)  # the next rollout goes on from where this one left
    np.testing.assert_array_equal(env.finish_rollout().observations[0], rollout.last_observations)


def test_a_failure_on_the_collector_thread_is_raised_where_training_waits_for_the_rollout():
    from training.actor_snapshot import ActorSnapshot

    _, env = _small_batch()
    wrong = ActorSnapshot(np.zeros(5, np.float32), np.ones(5, np.float32), [], np.ones(12, np.float32))  # 5 inputs
    env.start_rollout(wrong, 2)
    with pytest.raises(ValueError):
        env.finish_rollout()
    with pytest.raises(RuntimeError, match="no rollout is being collected"):
        env.finish_rollout()


@pytest.mark.slow  # trains
def test_overlapped_batched_training_writes_its_checkpoints(tmp_path):
    """With ``ppo.overlap_update`` the batch collects rollout k+1 in its worker process while PPO updates on rollout k."""
    import torch

    from training.runner import train

    config, _ = _small_batch(steps=4 * 6 * 3, save_every=3, ppo={"steps_per_env": 6, "mini_batches": 2,
                                                                  "learning_epochs": 1, "overlap_update": True})
    checkpoint = train(config, tmp_path / "run", quiet=True)
    state = torch.load(checkpoint, weights_only=False)
    assert (state["iteration"], state["env_steps"]) == (3, 72)
    assert len((tmp_path / "run" / "progress.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.slow  # starts worker processes
def test_pybullet_batches_in_worker_processes_collect_and_a_lost_process_is_named_where_training_waits():
    """PyBullet's batch spread over worker processes (training/process_shards.py): a rollout of every robot, then
    a worker killed outright is reported by the next rollout, naming its shard and exit code, and close() returns."""
    import os
    import signal

    from training.actor_snapshot import take_snapshot
    from training.ppo_adapter import build_algorithm
    from training.process_shards import ProcessShards

    config = load_config(overrides={"envs": 4, "env": {"engine": "pybullet", "batched": True},
                                    "policy": {"actor_hidden": [32], "critic_hidden": [32]}})
    shards = ProcessShards(config, workers=2)
    try:
        assert shards.get_observations()["critic"].shape == (4, shards.critic_size)
        idle = take_snapshot(build_algorithm(config, shards).actor)
        shards.start_rollout(idle, 3)
        rollout = shards.finish_rollout()
        assert rollout.actions.shape == (3, 4, 12) and np.isfinite(rollout.rewards).all()
        process, _ = shards._handles[1]
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        shards.start_rollout(idle, 3)
        with pytest.raises(RuntimeError, match=rf"batch shard 1 was lost: its worker process {process.pid} ended "
                                               r"\(exit code -9\)"):
            shards.finish_rollout()
    finally:
        processes = [p for p, _ in shards._handles]
        shards.close()
    assert not any(p.is_alive() for p in processes)
