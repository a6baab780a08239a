"""The robots of a batched run split into shards, each a ``BatchCollector`` of its own outside the trainer's process
(Ray actors across a cluster, ``training/ray_vec_env.py``, or worker processes of this machine,
``training/process_shards.py``, move the calls). Behind rsl_rl's ``VecEnv``; training
collects with ``start_rollout`` / ``finish_rollout``, one message per shard and rollout, as the local batch does.

Each shard seeds its robots from the run's seed and its index, so a run's episodes depend on how many shards it has.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from rsl_rl.env import VecEnv

from training.actor_snapshot import ActorSnapshot
from training.config import TrainConfig, derived_seed
from training.env_group import Rollout
from training.vec_env import describe_environments, observation_groups


class ShardLost(Exception):
    """A shard ended (its process, its node) while a call to it was outstanding."""


def shard_seed(seed: int, index: int, generation: int = 0) -> int:
    """The seed of shard ``index``'s ``generation``-th incarnation: streams of its own, never a replay of a lost one's."""
    return derived_seed(seed, index, generation)


class BatchShards(VecEnv):
    """``config.envs`` robots in ``shards`` shards. Subclasses move the calls: ``_launch`` starts shard ``index`` from
    its config, ``_call`` sends it a method call and returns a ticket, ``_result`` waits for the ticket's answer
    (raising ``ShardLost`` if the shard is gone) and ``_recover`` decides what a lost shard means."""

    device = "cpu"

    def __init__(self, config: TrainConfig, shards: int):
        if not config.env.batched:
            raise ValueError("batch shards run batches of robots: the config needs env.batched")
        describe_environments(self, config)
        self.lost_rollouts = 0
        self._config = config
        self._shares = [len(s) for s in np.array_split(np.arange(config.envs), shards)]
        self._generations = [0] * shards
        self._nonfinite = [0] * shards  # each shard's count of non-finite resets, as its last rollout said
        self._nonfinite_of_lost = 0  # the counts of shards since replaced
        self._pending: list | None = None
        self._request: tuple = ()
        self._handles: list = []
        try:
            self._handles = [self._launch(i, self.shard_config(i)) for i in range(shards)]
            parts = self._gather("observations")
        except BaseException:
            self.close()
            raise
        self._obs = observation_groups(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    @property
    def shards(self) -> int:
        return len(self._shares)

    def shard_config(self, index: int) -> TrainConfig:
        return replace(self._config, envs=self._shares[index],
                       seed=shard_seed(self._config.seed, index, self._generations[index]))

    # the transport, by subclasses
    def _launch(self, index: int, config: TrainConfig):
        raise NotImplementedError

    def _call(self, index: int, method: str, *args):
        raise NotImplementedError

    def _result(self, index: int, ticket):
        raise NotImplementedError

    def _stop(self, index: int) -> None:
        raise NotImplementedError

    def _recover(self, index: int, lost: ShardLost):
        """A shard was lost with ``self._request`` outstanding: a ticket for its part collected again, or raise."""
        raise RuntimeError(f"batch shard {index} was lost: {lost}") from lost

    def _restart(self, index: int) -> None:
        """Shard ``index`` anew, under a new seed, its lost predecessor stopped."""
        try:
            self._stop(index)
        except Exception:  # already gone
            pass
        self._generations[index] += 1
        self._nonfinite_of_lost += self._nonfinite[index]
        self._nonfinite[index] = 0
        self._handles[index] = self._launch(index, self.shard_config(index))

    def _gather(self, method: str, per_shard_args=None) -> list:
        tickets = [self._call(i, method, *(per_shard_args[i] if per_shard_args else ())) for i in range(self.shards)]
        return [self._result(i, t) for i, t in enumerate(tickets)]

    def get_observations(self):
        return self._obs

    def step(self, actions: torch.Tensor):
        actions = actions.detach().cpu().numpy()
        bounds = np.cumsum([0] + self._shares)
        parts = self._gather("step", [(actions[bounds[i]:bounds[i + 1]],) for i in range(self.shards)])
        obs, rewards, terminated, truncated = (np.concatenate([p[k] for p in parts]) for k in range(4))
        critic = np.concatenate([p[1] for p in self._gather("observations")])
        done = terminated | truncated
        self.episode_length_buf += 1
        self.episode_length_buf[torch.from_numpy(done)] = 0
        self._obs = observation_groups(obs, critic)
        return (self._obs, torch.from_numpy(rewards), torch.from_numpy(done.astype(np.float32)),
                {"time_outs": torch.from_numpy(truncated.astype(np.float32))})

    def start_rollout(self, actor: ActorSnapshot, steps: int, run_steps: int | None = None) -> None:
        """Have every shard collect ``steps`` steps of its robots, acting with ``actor``; returns at once.
        ``run_steps``: the env steps the run has taken before this rollout (a randomization curriculum's clock)."""
        if self._pending is not None:
            raise RuntimeError("a rollout is already being collected: finish_rollout() first")
        self._request = (self._share_snapshot(actor), steps, run_steps)
        self._pending = [self._call(i, "rollout", *self._request) for i in range(self.shards)]

    def _share_snapshot(self, actor: ActorSnapshot):
        return actor

    def finish_rollout(self) -> Rollout:
        """The rollout of every robot that ``start_rollout`` asked for."""
        if self._pending is None:
            raise RuntimeError("no rollout is being collected: start_rollout() first")
        pending, self._pending = self._pending, None
        parts = []
        for index, ticket in enumerate(pending):
            while True:
                try:
                    parts.append(self._result(index, ticket))
                    break
                except ShardLost as lost:
                    ticket = self._recover(index, lost)
        for index, part in enumerate(parts):
            self._nonfinite[index] = part.nonfinite_resets
        rollout = Rollout.concatenate(parts)
        rollout.nonfinite_resets = sum(self._nonfinite) + self._nonfinite_of_lost
        rollout.lost_rollouts = self.lost_rollouts
        self._obs = observation_groups(rollout.last_observations, rollout.last_critic_observations)
        return rollout

    def _drain(self) -> None:
        """Wait for the rollout in flight, so that no shard is stopped in the middle of a call."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            for index, ticket in enumerate(pending):
                try:
                    self._result(index, ticket)
                except Exception:
                    pass

    def close(self) -> None:
        self._drain()
        for index in range(len(self._handles)):
            try:
                self._stop(index)
            except Exception:
                pass
        self._handles = []
