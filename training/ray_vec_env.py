"""Batched environments as Ray actors (``pupper-train --ray [ADDRESS]``): the robots spread over actors across a
cluster, each stepping its own MuJoCo batch (``BatchCollector``) and returning whole rollouts; the learner stays in
the driver, on CUDA when the driver has it.

An actor that dies (its node lost, its process killed) is replaced, and the replacement collects its share of the
rollout again with the same actor snapshot; the progress log counts these in ``lost_rollouts``. The replacement's
robots start new episodes under a new seed.

Ray is the ``ray`` extra: the runtime and the robot's install never import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from rsl_rl.env import VecEnv

from training.actor_snapshot import ActorSnapshot
from training.batch_collector import BatchCollector
from training.config import TrainConfig
from training.env_group import Rollout
from training.vec_env import observation_groups

RAY_EXTRA = "pupper_ros[ray]"
MAX_REPLACEMENTS_PER_ROLLOUT = 3  # an actor lost again and again is a cluster problem, not bad luck: stop and say so


class RayUnavailable(RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or it cannot host the actors asked for."""


@dataclass(frozen=True)
class RaySettings:
    """Where the actors run: ``address`` "local" starts Ray on this machine, "auto" joins the running cluster,
    otherwise the cluster's address (as ``ray.init`` takes them); ``actors`` None takes one actor per CPU of the
    cluster (at most one per robot)."""

    address: str = "local"
    actors: int | None = None


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(f"pupper-train --ray needs Ray, which is the extra {RAY_EXTRA}: "
                             f"pip install '{RAY_EXTRA}' (or pip install ray)") from exc
    return ray


def learner_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def actor_seed(seed: int, index: int, generation: int) -> int:
    """The seed of actor ``index``'s ``generation``-th incarnation: its own streams, never a replay of the lost one's."""
    return int(np.random.SeedSequence([seed, index, generation]).generate_state(1)[0] % 2**31)


class RayVecEnv(VecEnv):
    """rsl_rl's VecEnv over ``config.envs`` robots in Ray actors, collecting with ``start_rollout``/``finish_rollout``
    as the local batch does."""

    def __init__(self, config: TrainConfig, settings: RaySettings):
        from pupper_ros.contract import CURRENT_CONTRACT
        from pupper_ros.robot_profile import load_robot_profile
        from training.env import CRITIC_EXTRA
        from training.symmetry import mirror_maps

        ray = self._ray = import_ray()
        if not config.env.batched:
            raise RayUnavailable("the Ray actors run MuJoCo batches: the config needs env.batched (and env.engine mujoco)")
        self._started_ray = False
        if not ray.is_initialized():
            try:
                ray.init(address=settings.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"pupper-train --ray: cannot reach a Ray cluster at {settings.address!r}: {exc}") from exc
            self._started_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        actors = settings.actors if settings.actors is not None else min(cpus, config.envs)
        if not 1 <= actors <= config.envs:
            self._shutdown()
            raise RayUnavailable(f"pupper-train --ray-actors {actors}: give between 1 and the {config.envs} robots "
                                 f"(envs) actors")
        if actors > cpus:
            self._shutdown()
            raise RayUnavailable(f"pupper-train --ray-actors {actors}: each actor takes one CPU and the cluster has "
                                 f"{cpus}")
        self.cfg = config.to_dict()
        self.num_envs = config.envs
        self.num_actions = CURRENT_CONTRACT.action_size
        self.device = learner_device()
        self.max_episode_length = int(round(config.env.episode_seconds / CURRENT_CONTRACT.control_period))
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long)
        self.mirror_maps = mirror_maps(CURRENT_CONTRACT, load_robot_profile(config.robot))
        self.critic_size = CURRENT_CONTRACT.observation_size + CRITIC_EXTRA
        self.lost_rollouts = 0
        self._config = config
        self._shares = [len(s) for s in np.array_split(np.arange(config.envs), actors)]
        self._generations = [0] * actors
        # the actor class is BatchCollector itself: an actor process imports its torch-free module only
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(BatchCollector)
        self._actors = [self._start_actor(i) for i in range(actors)]
        self._pending: list | None = None
        self._request: tuple | None = None
        self._nonfinite = [0] * actors  # each actor's count of non-finite resets, as its last rollout said
        self._nonfinite_of_lost = 0  # the counts of actors since replaced
        try:
            self._obs = self._join_observations(ray.get([a.observations.remote() for a in self._actors]))
        except Exception:
            self.close()
            raise

    @property
    def actors(self) -> int:
        return len(self._actors)

    def _start_actor(self, index: int):
        config = replace(self._config, envs=self._shares[index],
                         seed=actor_seed(self._config.seed, index, self._generations[index]))
        return self._remote.options(scheduling_strategy="SPREAD").remote(config, threads=1)  # one CPU each

    def _replace_actor(self, index: int) -> None:
        try:
            self._ray.kill(self._actors[index], no_restart=True)
        except Exception:  # already gone with its node
            pass
        self._generations[index] += 1
        self._nonfinite_of_lost += self._nonfinite[index]
        self._nonfinite[index] = 0
        self._actors[index] = self._start_actor(index)

    @staticmethod
    def _join_observations(parts):
        return observation_groups(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def get_observations(self):
        return self._obs

    def step(self, actions: torch.Tensor):
        actions = actions.detach().cpu().numpy()
        bounds = np.cumsum([0] + self._shares)
        parts = self._ray.get([a.step.remote(actions[bounds[i]:bounds[i + 1]]) for i, a in enumerate(self._actors)])
        obs, rewards, terminated, truncated = (np.concatenate([p[k] for p in parts]) for k in range(4))
        critic = np.concatenate([p[1] for p in self._ray.get([a.observations.remote() for a in self._actors])])
        done = terminated | truncated
        self.episode_length_buf += 1
        self.episode_length_buf[torch.from_numpy(done)] = 0
        self._obs = observation_groups(obs, critic)
        return (self._obs, torch.from_numpy(rewards), torch.from_numpy(done.astype(np.float32)),
                {"time_outs": torch.from_numpy(truncated.astype(np.float32))})

    def start_rollout(self, actor: ActorSnapshot, steps: int) -> None:
        """Have every actor collect ``steps`` steps of its robots, acting with ``actor``; returns at once."""
        if self._pending is not None:
            raise RuntimeError("a rollout is already being collected: finish_rollout() first")
        snapshot = self._ray.put(actor)
        self._request = (snapshot, steps)
        self._pending = [a.rollout.remote(snapshot, steps) for a in self._actors]

    def finish_rollout(self) -> Rollout:
        """The rollout of every robot that ``start_rollout`` asked for; a part lost with its actor is collected again
        by the actor's replacement."""
        if self._pending is None:
            raise RuntimeError("no rollout is being collected: start_rollout() first")
        ray = self._ray
        lost_errors = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)
        pending, self._pending = self._pending, None
        parts = []
        for index, ref in enumerate(pending):
            for attempt in range(MAX_REPLACEMENTS_PER_ROLLOUT + 1):
                try:
                    parts.append(ray.get(ref))
                    break
                except lost_errors as exc:
                    if attempt == MAX_REPLACEMENTS_PER_ROLLOUT:
                        raise RayUnavailable(f"Ray actor {index} was lost {attempt + 1} times in one rollout; last: "
                                             f"{type(exc).__name__}: {exc}") from exc
                    self.lost_rollouts += 1
                    self._replace_actor(index)
                    ref = self._actors[index].rollout.remote(*self._request)
        for index, part in enumerate(parts):
            self._nonfinite[index] = part.nonfinite_resets
        rollout = Rollout.concatenate(parts)
        rollout.nonfinite_resets = sum(self._nonfinite) + self._nonfinite_of_lost
        rollout.lost_rollouts = self.lost_rollouts
        self._obs = observation_groups(rollout.last_observations, rollout.last_critic_observations)
        return rollout

    def _shutdown(self) -> None:
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def close(self) -> None:
        if self._pending is not None:  # the rollout in flight: wait for it, so no actor is killed mid-call
            try:
                self._ray.wait(self._pending, num_returns=len(self._pending), timeout=60)
            finally:
                self._pending = None
        for actor in getattr(self, "_actors", []):
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self._actors = []
        self._shutdown()

