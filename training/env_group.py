"""Environments stepped one after another in one process, and the worker loop that serves them over a pipe.

Kept free of torch so that worker processes (spawned, importing only this module) stay small.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

import numpy as np

from training.actor_snapshot import ActorSnapshot
from training.config import TrainConfig


def add_reward_terms(total: dict[str, float], terms: dict[str, float]) -> None:
    """Add per-term reward sums into ``total`` (the logging of which terms pay what)."""
    for name, value in terms.items():
        total[name] = total.get(name, 0.0) + value


@dataclass
class Rollout:
    """``steps`` consecutive steps of every environment, acted by one actor snapshot; arrays are [step, env, ...]."""

    observations: np.ndarray
    critic_observations: np.ndarray
    actions: np.ndarray
    action_means: np.ndarray
    action_std: np.ndarray  # [action]
    rewards: np.ndarray
    dones: np.ndarray
    time_outs: np.ndarray
    last_observations: np.ndarray  # [env, ...]: after the last step, for bootstrapping
    last_critic_observations: np.ndarray
    finished: list = field(default_factory=list)  # (return, length, fell) of episodes that ended
    reward_terms: dict = field(default_factory=dict)  # summed over the rollout
    nonfinite_resets: int = 0  # robots reset because their physics went non-finite, since training began
    lost_rollouts: int = 0  # parts lost with their collector (a Ray actor's node) and collected again, since training began

    @staticmethod
    def concatenate(parts: list["Rollout"]) -> "Rollout":
        """One rollout of all environments from the rollouts of their worker slices, in order."""
        if len(parts) == 1:
            return parts[0]
        terms: dict[str, float] = {}
        for p in parts:
            add_reward_terms(terms, p.reward_terms)

        def join(name, axis=1):  # [step, env, ...] arrays join along the environments
            return np.concatenate([getattr(p, name) for p in parts], axis=axis)

        return Rollout(
            observations=join("observations"), critic_observations=join("critic_observations"),
            actions=join("actions"), action_means=join("action_means"), action_std=parts[0].action_std,
            rewards=join("rewards"), dones=join("dones"), time_outs=join("time_outs"),
            last_observations=join("last_observations", 0), last_critic_observations=join("last_critic_observations", 0),
            finished=[f for p in parts for f in p.finished], reward_terms=terms,
            nonfinite_resets=sum(p.nonfinite_resets for p in parts),
        )


def rollout_arrays(steps: int, envs: int, observation_size: int, critic_size: int, action_size: int) -> tuple:
    """The [step, env, ...] arrays a rollout is collected into: observations, critic observations, actions, action
    means, rewards, dones, time-outs."""
    actions = np.empty((steps, envs, action_size), dtype=np.float32)
    return (np.empty((steps, envs, observation_size), dtype=np.float32),
            np.empty((steps, envs, critic_size), dtype=np.float32), actions, np.empty_like(actions),
            np.empty((steps, envs), dtype=np.float32), np.empty((steps, envs), dtype=bool),
            np.empty((steps, envs), dtype=bool))


class EnvGroup:
    """Several environments stepped one after another, in the calling process."""

    def __init__(self, config: TrainConfig, seeds: list[int], randomize: bool | None = None):
        from training.env import PupperEnv

        self.envs = [PupperEnv(config, randomize=randomize) for _ in seeds]
        self._seeds = seeds
        # the noise of the actions sampled in ``rollout``, one stream per environment so that a rollout does not
        # depend on how the environments are spread over workers
        self._action_rngs = [np.random.default_rng([seed, 1]) for seed in seeds]
        self.observations = self.critic_observations = None
        self.episode_return = np.zeros(len(seeds))
        self.episode_length = np.zeros(len(seeds), dtype=np.int64)

    def reset(self):
        obs = np.stack([env.reset(seed=seed)[0] for env, seed in zip(self.envs, self._seeds)])
        for env in self.envs:  # spread the first time-outs over an episode, so they do not all come at once
            env.steps = int(env.np_random.integers(env.max_episode_steps))
        self.observations, self.critic_observations = obs, np.stack([e.critic_observation for e in self.envs])
        return self.observations, self.critic_observations

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
            add_reward_terms(terms, info["reward_terms"])
            if terminated or truncated:
                finished.append((self.episode_return[i], self.episode_length[i], bool(terminated)))
                self.episode_return[i] = 0.0
                self.episode_length[i] = 0
                o, _ = env.reset()
            obs[i], critic[i], rewards[i] = o, env.critic_observation, r
            dones[i], time_outs[i] = terminated or truncated, truncated
        self.observations, self.critic_observations = obs, critic
        return obs, critic, rewards, dones, time_outs, finished, terms

    def rollout(self, actor: ActorSnapshot, steps: int, run_steps: int | None = None) -> Rollout:
        """``steps`` steps of every environment with actions sampled from ``actor``, from where the last call left;
        ``run_steps``: the env steps the run has taken before this rollout (a randomization curriculum's clock)."""
        n = len(self.envs)
        if run_steps is not None:
            for env in self.envs:
                env.set_run_steps(run_steps)
        obs, critic, actions, means, rewards, dones, time_outs = rollout_arrays(
            steps, n, self.observations.shape[1], self.critic_observations.shape[1], len(actor.action_std))
        finished, terms = [], {}
        for t in range(steps):
            obs[t], critic[t] = self.observations, self.critic_observations
            noise = np.stack([rng.standard_normal(actions.shape[2], dtype=np.float32) for rng in self._action_rngs])
            actions[t], means[t] = actor.sample(self.observations, noise)
            _, _, rewards[t], dones[t], time_outs[t], ended, step_terms = self.step(actions[t])
            finished.extend(ended)
            add_reward_terms(terms, step_terms)
        return Rollout(obs, critic, actions, means, actor.action_std, rewards, dones, time_outs,
                       self.observations.copy(), self.critic_observations.copy(), finished, terms)

    def close(self):
        for env in self.envs:
            env.close()


def run_worker(conn, config: TrainConfig, seeds: list[int], randomize):
    try:
        group = EnvGroup(config, seeds, randomize)
        conn.send(("ok", None))
        while True:
            command, payload = conn.recv()
            if command == "step":
                conn.send(("ok", group.step(payload)))
            elif command == "rollout":
                conn.send(("ok", group.rollout(*payload)))
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
