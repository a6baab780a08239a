"""Environments stepped one after another in one process, and the worker loop that serves them over a pipe.

Kept free of torch so that worker processes (spawned, importing only this module) stay small.
"""

from __future__ import annotations

import os
import traceback

import numpy as np

from training.config import TrainConfig


class EnvGroup:
    """Several environments stepped one after another, in the calling process."""

    def __init__(self, config: TrainConfig, seeds: list[int], randomize: bool | None = None):
        from training.env import PupperEnv

        self.envs = [PupperEnv(config, randomize=randomize) for _ in seeds]
        self._seeds = seeds
        self.episode_return = np.zeros(len(seeds))
        self.episode_length = np.zeros(len(seeds), dtype=np.int64)

    def reset(self):
        obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(self.envs, self._seeds)])
        for env in self.envs:  # spread the first time-outs over an episode, so they do not all come at once
            env.steps = int(env.np_random.integers(env.max_episode_steps))
        return obs, np.stack([e.critic_observation for e in self.envs])

    def step(self, actions: np.ndarray):
        n = len(self.envs)
        obs = np.empty((n, self.envs[0].contract.observation_size), dtype=np.float32)
        critic = np.empty((n, self.envs[0].critic_size), dtype=np.float32)
        rewards = np.empty(n, dtype=np.float32)
        dones = np.zeros(n, dtype=bool)
        time_outs = np.zeros(n, dtype=bool)
        finished = []  # (return, length) of episodes that ended
        terms: dict[str, float] = {}
        for i, env in enumerate(self.envs):
            o, r, terminated, truncated, info = env.step(actions[i])
            self.episode_return[i] += r
            self.episode_length[i] += 1
            for k, v in info["reward_terms"].items():
                terms[k] = terms.get(k, 0.0) + v
            if terminated or truncated:
                finished.append((self.episode_return[i], self.episode_length[i], bool(terminated)))
                self.episode_return[i] = 0.0
                self.episode_length[i] = 0
                o, _ = env.reset()
            obs[i], critic[i], rewards[i] = o, env.critic_observation, r
            dones[i], time_outs[i] = terminated or truncated, truncated
        return obs, critic, rewards, dones, time_outs, finished, terms

    def close(self):
        for env in self.envs:
            env.close()


def run_worker(conn, config: TrainConfig, seeds: list[int], randomize):
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        group = EnvGroup(config, seeds, randomize)
        conn.send(("ok", None))
        while True:
            command, payload = conn.recv()
            if command == "step":
                conn.send(("ok", group.step(payload)))
            elif command == "reset":
                conn.send(("ok", group.reset()))
            elif command == "close":
                group.close()
                conn.send(("ok", None))
                return
    except (KeyboardInterrupt, EOFError):
        return
    except Exception:
        conn.send(("error", traceback.format_exc()))
