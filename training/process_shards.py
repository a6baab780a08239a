"""The robots of a batched run split over worker processes of this machine, each a ``BatchCollector`` of its own
(``BatchShards`` over pipes). A batch on the trainer's collector thread takes turns with the PPO update for the GIL:
PyBullet's steps its robots in Python, and MuJoCo's, though its physics releases the GIL, runs its observations,
rewards and resets in Python. In processes of their own the batches collect while the update runs
(``training.runner.batch_processes`` says how many; docs/performance.md measures both ways).
"""

from __future__ import annotations

import multiprocessing as mp
import os

from training.batch_collector import serve_collector
from training.batch_shards import BatchShards, ShardLost
from training.config import TrainConfig
from training.vec_env import single_threaded_children


class ProcessShards(BatchShards):
    """``config.envs`` robots in ``workers`` worker processes (0: one per core), one batch each."""

    def __init__(self, config: TrainConfig, workers: int = 0):
        from pupper_ros.sim import batch_class
        from pupper_ros.sim.robot_batch import check_batch_size

        check_batch_size(config.envs, batch_class(config.env.engine).BYTES_PER_ROBOT)  # all on this machine
        self._context = mp.get_context("spawn")  # workers start clean: no torch state forked from the trainer
        super().__init__(config, min(config.envs, workers or os.cpu_count() or 1))

    def _launch(self, index: int, config: TrainConfig):
        parent, child = self._context.Pipe()
        with single_threaded_children():
            process = self._context.Process(target=serve_collector, args=(child, config), daemon=True,
                                            name=f"batch-shard-{index}")
            process.start()
        child.close()
        return process, parent

    def _call(self, index: int, method: str, *args):
        """Send the call; the ticket says whether it went (a process already gone is reported by ``_result``)."""
        _, conn = self._handles[index]
        try:
            conn.send((method, args))
        except OSError:  # BrokenPipeError: the process has ended
            return False
        return True

    def _result(self, index: int, ticket):
        process, conn = self._handles[index]
        try:
            if not ticket:
                raise EOFError("the call could not be sent")
            status, payload = conn.recv()
        except (EOFError, OSError) as exc:
            process.join(timeout=1.0)
            raise ShardLost(f"its worker process {process.pid} ended (exit code {process.exitcode})") from exc
        if status == "error":
            raise RuntimeError(f"batch shard {index} failed:\n{payload}")
        return payload

    def _stop(self, index: int) -> None:
        process, conn = self._handles[index]
        try:
            conn.send(("close", ()))
        except OSError:  # BrokenPipeError: already gone
            pass
        process.join(timeout=5.0)
        if process.is_alive():
            process.terminate()
            process.join()
        conn.close()
