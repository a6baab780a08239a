"""Batched environments as Ray actors (``pupper-train --ray [ADDRESS]``): the robots spread over actors across a
cluster, each stepping its own batch in the config's engine (``BatchCollector``) and returning whole rollouts; the learner stays in
the driver, on CUDA when the driver has it.

An actor that dies (its node lost, its process killed) is replaced, and the replacement collects its share of the
rollout again with the same actor snapshot; the progress log counts these in ``lost_rollouts``. The replacement's
robots start new episodes under a new seed.

Ray is the ``ray`` extra: the runtime and the robot's install never import this module.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass

import torch

from training.actor_snapshot import ActorSnapshot
from training.batch_collector import BatchCollector
from training.batch_shards import BatchShards, ShardLost
from training.config import TrainConfig

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


class RayVecEnv(BatchShards):
    """The shards as Ray actors of one CPU each, placed spread over the cluster's nodes."""

    def __init__(self, config: TrainConfig, settings: RaySettings):
        ray = self._ray = import_ray()
        if not config.env.batched:
            raise RayUnavailable("the Ray actors run batches of robots: the config needs env.batched")
        self._started_ray = False
        if not ray.is_initialized():
            # Ray's core takes SIGTERM for itself on init (it logs and exits 15); the trainer's handlers, which
            # checkpoint and exit cleanly (training/train.py), are put back
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                ray.init(address=settings.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailable(f"pupper-train --ray: cannot reach a Ray cluster at {settings.address!r}: {exc}") from exc
            finally:
                if threading.current_thread() is threading.main_thread():
                    for sig, handler in handlers.items():
                        if handler is not None:
                            signal.signal(sig, handler)
            self._started_ray = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        actors = settings.actors if settings.actors is not None else min(cpus, config.envs)
        problem = ""
        if not 1 <= actors <= config.envs:
            problem = f"give between 1 and the {config.envs} robots (envs) actors"
        elif actors > cpus:
            problem = f"each actor takes one CPU and the cluster has {cpus}"
        if problem:
            self._shutdown()
            raise RayUnavailable(f"pupper-train --ray-actors {actors}: {problem}")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"  # the learner's
        # the actor class is BatchCollector itself: an actor process imports its torch-free module only
        self._remote = ray.remote(num_cpus=1, max_restarts=0)(BatchCollector)
        self._losses_this_rollout = 0
        super().__init__(config, actors)

    def _launch(self, index: int, config: TrainConfig):
        return self._remote.options(scheduling_strategy="SPREAD").remote(config, None, 1)  # one thread (MuJoCo's; PyBullet has one)

    def _call(self, index: int, method: str, *args):
        return getattr(self._handles[index], method).remote(*args)

    def _result(self, index: int, ticket):
        ray = self._ray
        try:
            return ray.get(ticket)
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
            raise ShardLost(f"{type(exc).__name__}: {exc}") from exc

    def _stop(self, index: int) -> None:
        self._ray.kill(self._handles[index], no_restart=True)

    def _share_snapshot(self, actor: ActorSnapshot):
        self._losses_this_rollout = 0
        return self._ray.put(actor)  # once into the object store, not once per actor

    def _recover(self, index: int, lost: ShardLost):
        self._losses_this_rollout += 1
        if self._losses_this_rollout > MAX_REPLACEMENTS_PER_ROLLOUT:
            raise RayUnavailable(f"Ray actors were lost {self._losses_this_rollout} times in one rollout; last: "
                                 f"actor {index}, {lost}") from lost
        self.lost_rollouts += 1
        self._restart(index)
        return self._call(index, "rollout", *self._request)

    def _shutdown(self) -> None:
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def close(self) -> None:
        super().close()
        self._shutdown()
