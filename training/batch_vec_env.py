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
from training.batch_collector import BatchCollector
from training.config import TrainConfig
from training.env_group import Rollout
from training.vec_env import observation_groups


class BatchVecEnv(VecEnv):
    def __init__(self, config: TrainConfig, randomize: bool | None = None, threads: int = 0):
        from training.symmetry import mirror_maps

        self.collector = BatchCollector(config, randomize=randomize, threads=threads)
        self.env = env = self.collector.env
        self.cfg = config.to_dict()
        self.num_envs = env.robots
        self.num_actions = env.contract.action_size
        self.device = "cpu"
        self.max_episode_length = env.max_episode_steps
        self.episode_length_buf = torch.from_numpy(env.steps)  # shares the environment's counters
        self.mirror_maps = mirror_maps(env.contract, env.profile)
        self.critic_size = env.critic_size
        self._collector: threading.Thread | None = None
        self._collected: Rollout | BaseException | None = None

    def get_observations(self):
        return observation_groups(*self.collector.observations())

    def step(self, actions: torch.Tensor):
        obs, rewards, terminated, truncated, _, _ = self.collector.step(actions.detach().numpy())
        done = terminated | truncated
        extras = {"time_outs": torch.from_numpy(truncated.astype(np.float32))}
        return (observation_groups(obs, self.env.critic_observation.copy()), torch.from_numpy(rewards),
                torch.from_numpy(done.astype(np.float32)), extras)

    def rollout(self, actor: ActorSnapshot, steps: int, run_steps: int | None = None) -> Rollout:
        """``steps`` steps of every robot with actions sampled from ``actor``, from where the last call left."""
        return self.collector.rollout(actor, steps, run_steps)

    def start_rollout(self, actor: ActorSnapshot, steps: int, run_steps: int | None = None) -> None:
        """Collect ``steps`` steps of every robot on a thread of this process, acting with ``actor``; returns at once.
        ``run_steps``: the env steps the run has taken before this rollout (a randomization curriculum's clock)."""
        if self._collector is not None:
            raise RuntimeError("a rollout is already being collected: finish_rollout() first")

        def collect():
            try:
                self._collected = self.rollout(actor, steps, run_steps)
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
        self.collector.close()
