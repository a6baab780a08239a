"""The batched environment behind rsl_rl's ``VecEnv``: every robot in this process, stepped as arrays.

Training collects whole rollouts as the worker path does (``start_rollout`` / ``finish_rollout``, acting with a numpy
snapshot of the actor), here on a thread of this process: the physics runs on MuJoCo's thread pool with the GIL
released, so with ``ppo.overlap_update`` the PPO update of one rollout runs while the next is collected. ``step`` is
rsl_rl's one-step interface, kept for its own use and for tests.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from rsl_rl.env import VecEnv

from training.actor_snapshot import ActorSnapshot
from training.batch_env import BatchedPupperEnv
from training.config import TrainConfig
from training.env_group import Rollout, rollout_arrays
from training.vec_env import observation_groups


class BatchVecEnv(VecEnv):
    def __init__(self, config: TrainConfig, randomize: bool | None = None, threads: int = 0):
        from training.symmetry import mirror_maps

        self.env = env = BatchedPupperEnv(config, config.envs, randomize=randomize, threads=threads)
        self.cfg = config.to_dict()
        self.num_envs = env.robots
        self.num_actions = env.contract.action_size
        self.device = "cpu"
        self.max_episode_length = env.max_episode_steps
        self.episode_length_buf = torch.from_numpy(env.steps)  # shares the environment's counters
        self.mirror_maps = mirror_maps(env.contract, env.profile)
        self.critic_size = env.critic_size
        self._action_rng = np.random.default_rng([config.seed, 1])
        self._return = np.zeros(env.robots)
        self._length = np.zeros(env.robots, dtype=np.int64)
        self._collector: threading.Thread | None = None
        self._collected: Rollout | BaseException | None = None

    def get_observations(self):
        return observation_groups(self.env.observation, self.env.critic_observation.copy())

    def _step(self, actions: np.ndarray):
        """One step of every robot; the episode bookkeeping of the progress log. Returns the environment's step and
        the episodes that ended, as (return, length, fell)."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        done = terminated | truncated
        self._return += rewards
        self._length += 1
        finished = [(float(self._return[i]), int(self._length[i]), bool(terminated[i])) for i in np.flatnonzero(done)]
        self._return[done], self._length[done] = 0.0, 0
        return obs, rewards, terminated, truncated, info, finished

    def step(self, actions: torch.Tensor):
        obs, rewards, terminated, truncated, _, _ = self._step(actions.detach().numpy())
        done = terminated | truncated
        extras = {"time_outs": torch.from_numpy(truncated.astype(np.float32))}
        return (observation_groups(obs, self.env.critic_observation.copy()), torch.from_numpy(rewards),
                torch.from_numpy(done.astype(np.float32)), extras)

    def rollout(self, actor: ActorSnapshot, steps: int) -> Rollout:
        """``steps`` steps of every robot with actions sampled from ``actor``, from where the last call left."""
        env, n = self.env, self.num_envs
        obs, critic, actions, means, rewards, dones, time_outs = rollout_arrays(
            steps, n, env.contract.observation_size, env.critic_size, self.num_actions)
        finished, terms = [], {}
        for t in range(steps):
            obs[t], critic[t] = env.observation, env.critic_observation
            noise = self._action_rng.standard_normal((n, self.num_actions), dtype=np.float32)
            actions[t], means[t] = actor.sample(obs[t], noise)
            _, rewards[t], terminated, time_outs[t], info, ended = self._step(actions[t])
            dones[t] = terminated | time_outs[t]
            finished.extend(ended)
            for name, value in info["reward_terms"].items():
                terms[name] = terms.get(name, 0.0) + float(np.sum(value))
        return Rollout(obs, critic, actions, means, actor.action_std, rewards, dones, time_outs, env.observation.copy(),
                       env.critic_observation.copy(), finished, terms, nonfinite_resets=env.nonfinite_resets)

    def start_rollout(self, actor: ActorSnapshot, steps: int) -> None:
        """Collect ``steps`` steps of every robot on a thread of this process, acting with ``actor``; returns at once."""
        if self._collector is not None:
            raise RuntimeError("a rollout is already being collected: finish_rollout() first")

        def collect():
            try:
                self._collected = self.rollout(actor, steps)
            except BaseException as exc:  # handed to finish_rollout, which raises it in the trainer's thread
                self._collected = exc

        self._collector = threading.Thread(target=collect, name="batch-rollout", daemon=True)
        self._collector.start()

    def finish_rollout(self) -> Rollout:
        """The rollout ``start_rollout`` asked for, once collected."""
        if self._collector is None:
            raise RuntimeError("no rollout is being collected: start_rollout() first")
        self._collector.join()
        self._collector, collected, self._collected = None, self._collected, None
        if isinstance(collected, BaseException):
            raise collected
        return collected

    def close(self) -> None:
        if self._collector is not None:
            self._collector.join()
            self._collector = None
