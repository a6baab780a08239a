"""A batch of robots collecting whole rollouts, acting with a numpy snapshot of the actor: what the batch's collector
thread runs in the trainer's process (training/batch_vec_env.py), each worker process of training/process_shards.py
and each Ray actor on a cluster (training/ray_vec_env.py). Kept free of torch, so that a worker stays small.
"""

from __future__ import annotations

import signal
import traceback

import numpy as np

from training.actor_snapshot import ActorSnapshot
from training.batch_env import BatchedPupperEnv
from training.config import TrainConfig
from training.env_group import Rollout, rollout_arrays


class BatchCollector:
    """``config.envs`` robots of one batch (the config's engine), seeded by ``config.seed``, with the episode bookkeeping of the
    progress log."""

    def __init__(self, config: TrainConfig, randomize: bool | None = None, threads: int = 0):
        self.env = env = BatchedPupperEnv(config, config.envs, randomize=randomize, threads=threads)
        self.action_size = env.contract.action_size
        self._action_rng = np.random.default_rng([config.seed, 1])
        self._return = np.zeros(env.robots)
        self._length = np.zeros(env.robots, dtype=np.int64)

    def step(self, actions: np.ndarray):
        """One step of every robot; the environment's step and the episodes that ended, as (return, length, fell)."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        done = terminated | truncated
        self._return += rewards
        self._length += 1
        finished = [(float(self._return[i]), int(self._length[i]), bool(terminated[i])) for i in np.flatnonzero(done)]
        self._return[done], self._length[done] = 0.0, 0
        return obs, rewards, terminated, truncated, info, finished

    def rollout(self, actor: ActorSnapshot, steps: int, run_steps: int | None = None) -> Rollout:
        """``steps`` steps of every robot with actions sampled from ``actor``, from where the last call left;
        ``run_steps``: the env steps the run has taken before this rollout (a randomization curriculum's clock)."""
        env, n = self.env, self.env.robots
        if run_steps is not None:
            env.set_run_steps(run_steps)
        obs, critic, actions, means, rewards, dones, time_outs = rollout_arrays(
            steps, n, env.contract.observation_size, env.critic_size, self.action_size)
        finished, terms = [], {}
        for t in range(steps):
            obs[t], critic[t] = env.observation, env.critic_observation
            noise = self._action_rng.standard_normal((n, self.action_size), dtype=np.float32)
            actions[t], means[t] = actor.sample(obs[t], noise)
            _, rewards[t], terminated, time_outs[t], info, ended = self.step(actions[t])
            dones[t] = terminated | time_outs[t]
            finished.extend(ended)
            for name, value in info["reward_terms"].items():
                terms[name] = terms.get(name, 0.0) + float(np.sum(value))
        return Rollout(obs, critic, actions, means, actor.action_std, rewards, dones, time_outs, env.observation.copy(),
                       env.critic_observation.copy(), finished, terms, nonfinite_resets=env.nonfinite_resets)

    def observations(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the policy's and the critic's observations of every robot, as they stand."""
        return self.env.observation.copy(), self.env.critic_observation.copy()

    def close(self) -> None:
        self.env.close()


def serve_collector(conn, config: TrainConfig) -> None:
    """A worker process of ``training/process_shards.py``: a ``BatchCollector`` answering method calls from the pipe
    until told to close. Here, not there, so that the worker never imports torch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's: it checkpoints, then closes the workers
    try:
        collector = BatchCollector(config, threads=1)
    except Exception:
        failure = traceback.format_exc()
        collector = None
    while True:
        try:
            method, args = conn.recv()
        except EOFError:  # the trainer is gone
            return
        if method == "close":
            if collector is not None:
                collector.close()
            return
        if collector is None:
            conn.send(("error", failure))
            continue
        try:
            conn.send(("ok", getattr(collector, method)(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
