"""N Pupper environments stepped in worker processes, behind rsl_rl's ``VecEnv`` interface.

Each worker owns a slice of the environments (created inside the worker) and steps them in turn; finished episodes
reset automatically, legged_gym style, and their time-outs are reported apart from falls. Besides the step-by-step
``step`` of the interface, the workers collect whole rollouts on their own (``start_rollout``/``finish_rollout``),
acting with a snapshot of the actor, so that the trainer can update while they step.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os

import numpy as np
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from training.actor_snapshot import ActorSnapshot
from training.config import TrainConfig
from training.env_group import EnvGroup, Rollout, add_reward_terms, run_worker


def observation_groups(policy, critic) -> TensorDict:
    """The observation groups rsl_rl's actor and critic read (``rsl_rl_config``'s ``obs_groups``), batched like
    ``policy``: [env, ...] or [step, env, ...]."""
    # writable: a rollout that came through Ray holds the object store's read-only arrays (copied then)
    policy, critic = (np.require(a, requirements="W") if isinstance(a, np.ndarray) else a for a in (policy, critic))
    return TensorDict({"policy": torch.as_tensor(policy), "critic": torch.as_tensor(critic)},
                      batch_size=list(policy.shape[:-1]))


def describe_environments(vec_env: VecEnv, config: TrainConfig) -> None:
    """What rsl_rl and the trainer read of a VecEnv whose environments live elsewhere (worker processes, shards):
    sizes from the policy contract, episode length, its counters, the mirror maps of the profile's robot."""
    from pupper_ros.contract import CURRENT_CONTRACT
    from pupper_ros.robot_profile import load_robot_profile
    from training.env import CRITIC_EXTRA
    from training.symmetry import mirror_maps

    vec_env.cfg = config.to_dict()
    vec_env.num_envs = config.envs
    vec_env.num_actions = CURRENT_CONTRACT.action_size
    vec_env.max_episode_length = int(round(config.env.episode_seconds / CURRENT_CONTRACT.control_period))
    vec_env.episode_length_buf = torch.zeros(config.envs, dtype=torch.long)
    vec_env.mirror_maps = mirror_maps(CURRENT_CONTRACT, load_robot_profile(config.robot))
    vec_env.critic_size = CURRENT_CONTRACT.observation_size + CRITIC_EXTRA


@contextlib.contextmanager
def single_threaded_children():
    """Worker processes started inside get one BLAS/OpenMP thread each. A worker is one core's worth of work: a
    multi-threaded BLAS in each (for the actor's small matmuls) spins against the other workers and, measured, halves
    the training loop's throughput. Set in the environment because numpy reads it once, on import."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class PupperVecEnv(VecEnv):
    """rsl_rl's VecEnv over ``config.envs`` environments in ``workers`` processes (0 = one per core, 1 = in-process)."""

    def __init__(self, config: TrainConfig, workers: int | None = None, randomize: bool | None = None):
        describe_environments(self, config)
        self.device = "cpu"
        workers = workers if workers is not None else config.workers
        workers = min(self.num_envs, workers or os.cpu_count() or 1)
        seeds = [config.seed * 10_000 + i for i in range(self.num_envs)]
        slices = np.array_split(np.arange(self.num_envs), workers)
        self._slices = [s for s in slices if len(s)]
        self._local = None
        self._local_rollout: Rollout | None = None
        self._rollout_pending = False
        self._conns, self._procs = [], []
        if workers == 1:
            self._local = EnvGroup(config, seeds, randomize)
        else:
            ctx = mp.get_context("spawn")  # workers start clean: no torch state forked from the trainer
            with single_threaded_children():
                for s in self._slices:
                    parent, child = ctx.Pipe()
                    proc = ctx.Process(target=run_worker, args=(child, config, [seeds[i] for i in s], randomize), daemon=True)
                    proc.start()
                    self._conns.append(parent)
                    self._procs.append(proc)
            for conn in self._conns:
                self._receive(conn)
        self.finished_episodes: list[tuple[float, int, bool]] = []
        self.reward_terms: dict[str, float] = {}
        self._obs = self._reset()

    def _receive(self, conn):
        status, payload = conn.recv()
        if status == "error":
            self.close()
            raise RuntimeError(f"environment worker failed:\n{payload}")
        return payload

    def _reset(self) -> TensorDict:
        if self._local is not None:
            parts = [self._local.reset()]
        else:
            for conn in self._conns:
                conn.send(("reset", None))
            parts = [self._receive(conn) for conn in self._conns]
        obs = np.concatenate([p[0] for p in parts])
        critic = np.concatenate([p[1] for p in parts])
        return observation_groups(obs, critic)

    def get_observations(self) -> TensorDict:
        return self._obs

    def step(self, actions: torch.Tensor):
        actions = actions.detach().cpu().numpy()
        if self._local is not None:
            parts = [self._local.step(actions)]
        else:
            for conn, s in zip(self._conns, self._slices):
                conn.send(("step", actions[s]))
            parts = [self._receive(conn) for conn in self._conns]
        obs = np.concatenate([p[0] for p in parts])
        critic = np.concatenate([p[1] for p in parts])
        rewards = torch.from_numpy(np.concatenate([p[2] for p in parts]))
        dones = np.concatenate([p[3] for p in parts])
        time_outs = torch.from_numpy(np.concatenate([p[4] for p in parts]).astype(np.float32))
        for p in parts:
            self.finished_episodes.extend(p[5])
            add_reward_terms(self.reward_terms, p[6])
        self.episode_length_buf += 1
        self.episode_length_buf[torch.from_numpy(dones)] = 0
        self._obs = observation_groups(obs, critic)
        return self._obs, rewards, torch.from_numpy(dones.astype(np.float32)), {"time_outs": time_outs}

    def start_rollout(self, actor: ActorSnapshot, steps: int, run_steps: int | None = None) -> None:
        """Have every worker collect ``steps`` steps of its environments, acting with ``actor``; returns at once.
        ``run_steps``: the env steps the run has taken before this rollout (a randomization curriculum's clock)."""
        if self._rollout_pending:
            raise RuntimeError("a rollout is already being collected: finish_rollout() first")
        if self._local is not None:
            self._local_rollout = self._local.rollout(actor, steps, run_steps)
        else:
            for conn in self._conns:
                conn.send(("rollout", (actor, steps, run_steps)))
        self._rollout_pending = True

    def finish_rollout(self) -> Rollout:
        """The rollout of all environments that ``start_rollout`` asked for, once every worker has sent its part."""
        if not self._rollout_pending:
            raise RuntimeError("no rollout is being collected: start_rollout() first")
        self._rollout_pending = False
        if self._local is not None:
            rollout, self._local_rollout = self._local_rollout, None
        else:
            rollout = Rollout.concatenate([self._receive(conn) for conn in self._conns])
        self._obs = observation_groups(rollout.last_observations, rollout.last_critic_observations)
        return rollout

    def close(self):
        if self._rollout_pending and self._local is None:  # drain the rollout in flight before saying goodbye
            self._rollout_pending = False
            for conn in self._conns:
                try:
                    conn.recv()
                except (EOFError, OSError):
                    pass
        if self._local is not None:
            self._local.close()
        for conn in self._conns:
            try:
                conn.send(("close", None))
                conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []
