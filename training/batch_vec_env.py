"""The batched environment behind rsl_rl's ``VecEnv``: every robot in this process, stepped as arrays.

rsl_rl's PPO acts on the whole batch once per step (``alg.act``) and records it (``alg.process_env_step``); there are
no worker processes and nothing is pickled. Finished episodes and reward sums are kept for the progress log, as
``PupperVecEnv`` keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from rsl_rl.env import VecEnv

from training.batch_env import BatchedPupperEnv
from training.config import TrainConfig
from training.vec_env import observation_groups


@dataclass
class IterationSummary:
    """What the progress log reads from one iteration's collection (as a worker ``Rollout`` provides)."""

    finished: list = field(default_factory=list)  # (return, length, fell) of each episode that ended
    reward_terms: dict = field(default_factory=dict)  # each weighted term, summed over robots and steps
    nonfinite_resets: int = 0


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
        self._return = np.zeros(env.robots)
        self._length = np.zeros(env.robots, dtype=np.int64)
        self.summary = IterationSummary()

    def get_observations(self):
        return observation_groups(self.env.observation, self.env.critic_observation.copy())

    def step(self, actions: torch.Tensor):
        obs, rewards, terminated, truncated, info = self.env.step(actions.detach().numpy())
        done = terminated | truncated
        self._return += rewards
        self._length += 1
        summary = self.summary
        for i in np.flatnonzero(done):
            summary.finished.append((float(self._return[i]), int(self._length[i]), bool(terminated[i])))
        self._return[done], self._length[done] = 0.0, 0
        for name, value in info["reward_terms"].items():
            summary.reward_terms[name] = summary.reward_terms.get(name, 0.0) + float(np.sum(value))
        summary.nonfinite_resets = self.env.nonfinite_resets
        extras = {"time_outs": torch.from_numpy(truncated.astype(np.float32))}
        return (observation_groups(obs, self.env.critic_observation.copy()), torch.from_numpy(rewards),
                torch.from_numpy(done.astype(np.float32)), extras)

    def take_summary(self) -> IterationSummary:
        summary, self.summary = self.summary, IterationSummary()
        return summary

    def close(self) -> None:
        pass
