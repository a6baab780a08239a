"""The training loop: PPO iterations over rollouts the environments collect, the progress log, checkpoints, and the
stop (the configured steps, ``--minutes``, Ctrl-C or SIGTERM, each with a checkpoint).

Collection is the environments' own (``start_rollout`` / ``finish_rollout``): worker processes for the one-robot
environments, worker processes for batches (``batch_processes``; MuJoCo in lockstep on a collector thread), batches in
Ray actors with ``--ray``. With ``ppo.overlap_update`` the next rollout is collected while the update runs.
"""

from __future__ import annotations

import collections
import csv
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from training.config import TrainConfig, derived_seed
from training.ppo_adapter import build_algorithm, learn_from_rollout
from training.run_files import (CHECKPOINT_DIR, LATEST, PROGRESS_COLUMNS, PROGRESS_LOG, keep_progress_until,
                                save_checkpoint)


def training_iterations(alg, env, config: TrainConfig, run_steps: int = 0):
    """Endless PPO iterations from ``run_steps`` env steps into the run (a resumed run's; the clock of a
    randomization curriculum, which each rollout is told); yields (rollout, losses) after each update.

    With ``ppo.overlap_update`` the environments (worker processes, Ray actors) collect rollout
    k+1 while the trainer updates on rollout k, acting with the actor from before that update (one update behind, as
    in asynchronous PPO): the cores are kept busy instead of taking turns. Otherwise collection waits for the update,
    which then uses every core.
    """
    from training.actor_snapshot import take_snapshot

    steps = config.ppo.steps_per_env
    overlap = config.ppo.overlap_update
    started = run_steps

    def start():
        nonlocal started
        env.start_rollout(take_snapshot(alg.actor), steps, started)
        started += config.envs * steps

    start()
    try:
        while True:
            rollout = env.finish_rollout()
            if overlap:
                start()
                torch.set_num_threads(1)  # collection has the other cores
                losses = learn_from_rollout(alg, rollout)
            else:
                torch.set_num_threads(os.cpu_count() or 1)  # collection waits: the update may use every core
                losses = learn_from_rollout(alg, rollout)
                start()
            yield rollout, losses
    finally:
        torch.set_num_threads(1)


def make_env(config: TrainConfig, ray=None):
    """With ``ray`` (``RaySettings``): batches of the config's engine in Ray actors. ``env.batched``: the robots as
    batches in ``batch_processes`` worker processes, or, for MuJoCo in lockstep, one batch in this process.
    Otherwise one environment per robot, in worker processes."""
    if ray is not None:
        from training.ray_vec_env import RayVecEnv

        return RayVecEnv(config, ray)
    processes = batch_processes(config)
    if processes:
        from training.process_shards import ProcessShards

        return ProcessShards(config, processes)
    if config.env.batched:
        from training.batch_vec_env import BatchVecEnv

        return BatchVecEnv(config)
    from training.vec_env import PupperVecEnv

    return PupperVecEnv(config)


def batch_processes(config: TrainConfig) -> int:
    """How many worker processes a batched run's robots are collected in; 0: on a thread of the trainer's process.

    MuJoCo in lockstep stays in the trainer's process, stepping on every core while the update waits. Overlapped with
    the update, a batch on a thread would hold the GIL for its Python (observations, rewards, resets) while the update
    wants it for torch's: in one worker process of its own (one MuJoCo thread, the update on the other core) the loop
    ran 1.33x the iterations per second on 2 cores (docs/performance.md). PyBullet steps in Python, one robot after
    the other: one process per core (``workers``, 0 for one per core).
    """
    if not config.env.batched:
        return 0
    if config.env.engine == "pybullet":
        return config.workers or os.cpu_count() or 1
    return (config.workers or 1) if config.ppo.overlap_update else 0


def resumed_seed(seed: int, iteration: int) -> int:
    """The seed of a run's environments and action noise after resuming at ``iteration``: draws of their own (commands,
    randomization, pushes), not a replay of those the run started with. ``config.yaml`` keeps the run's seed."""
    return derived_seed(seed, iteration)


def train(config: TrainConfig, out: Path, resume: Path | None = None, quiet: bool = False,
          minutes: float | None = None, ray=None) -> Path:
    """Train until ``config.steps`` environment steps, or until ``minutes`` of wall clock have passed (then the final
    checkpoint is written and the point reached is printed); returns the last checkpoint's path. ``ray``
    (``training.ray_vec_env.RaySettings``) collects on Ray actors instead of in this machine's processes."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    state = torch.load(resume, weights_only=False, map_location="cpu") if resume is not None else None
    draws = config if state is None else replace(config, seed=resumed_seed(config.seed, state["iteration"]))
    torch.manual_seed(draws.seed)
    torch.set_num_threads(1)  # the cores belong to the environment workers
    env = make_env(draws, ray)  # first: a batch that cannot be built leaves no run directory behind
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    alg = build_algorithm(config, env)
    iteration, env_steps, wall_before = 0, 0, 0.0
    if state is not None:
        alg.load(state["algorithm"], None, strict=True)
        iteration, env_steps, wall_before = state["iteration"], state["env_steps"], state["wall_clock"]
    steps_per_iteration = config.envs * config.ppo.steps_per_env
    total_iterations = max(iteration + 1, -(-config.steps // steps_per_iteration))
    writer = SummaryWriter(log_dir=str(out / "tensorboard"))
    progress_path = out / PROGRESS_LOG
    if resume is not None and progress_path.exists():
        keep_progress_until(progress_path, iteration)
    new_file = not progress_path.exists()
    progress_file = progress_path.open("a", newline="")
    progress = csv.writer(progress_file)
    if new_file:
        progress.writerow(PROGRESS_COLUMNS)
    bar = tqdm(total=total_iterations * steps_per_iteration, initial=env_steps, unit="step", unit_scale=True,
               dynamic_ncols=True, disable=quiet, file=sys.stdout)
    start = time.monotonic()
    checkpoint = out / CHECKPOINT_DIR / LATEST
    recent: collections.deque = collections.deque(maxlen=100)
    alg.train_mode()
    iterations = training_iterations(alg, env, config, env_steps)
    try:
        while iteration < total_iterations:
            rollout, losses = next(iterations)
            iteration += 1
            env_steps += steps_per_iteration
            wall = wall_before + time.monotonic() - start

            recent.extend(rollout.finished)
            terms = rollout.reward_terms
            finished = list(recent)  # the last 100 episodes, as rsl_rl reports them
            mean_return = sum(f[0] for f in finished) / len(finished) if finished else float("nan")
            mean_length = sum(f[1] for f in finished) / len(finished) if finished else float("nan")
            fall_share = sum(f[2] for f in finished) / len(finished) if finished else float("nan")
            for name, value in losses.items():
                writer.add_scalar(f"loss/{name}", value, env_steps)
            for name, value in terms.items():
                writer.add_scalar(f"reward/{name}", value / steps_per_iteration, env_steps)
            if finished:
                writer.add_scalar("episode/return", mean_return, env_steps)
                writer.add_scalar("episode/length", mean_length, env_steps)
                writer.add_scalar("episode/fall_share", fall_share, env_steps)
            writer.add_scalar("policy/action_std", float(alg.get_policy().output_std.detach().mean()), env_steps)
            writer.add_scalar("policy/learning_rate", alg.learning_rate, env_steps)  # the adaptive schedule's
            bar.update(steps_per_iteration)
            bar.set_postfix_str(f"it {iteration}/{total_iterations} return {mean_return:6.2f} len {mean_length:5.0f} falls {fall_share:4.2f}")

            out_of_time = minutes is not None and time.monotonic() - start >= minutes * 60
            saving = iteration % config.save_every == 0 or iteration == total_iterations or out_of_time
            numbered = out / CHECKPOINT_DIR / f"model_{iteration:05d}.pt"
            saved = numbered.name if saving else ""
            # The row first: a run killed between the two then resumes from the previous checkpoint and drops this
            # row; the other way round it resumed from this checkpoint with this row never written.
            progress.writerow([iteration, env_steps, f"{wall:.1f}", f"{mean_return:.4f}", f"{mean_length:.1f}", f"{fall_share:.3f}",
                               saved, rollout.nonfinite_resets, rollout.lost_rollouts])
            progress_file.flush()
            if saving:
                save_checkpoint(numbered, alg, config, iteration, env_steps, wall)
                save_checkpoint(checkpoint, alg, config, iteration, env_steps, wall)
            if out_of_time:
                print(f"\npupper-train: stopped after {minutes:g} min (--minutes) at iteration {iteration}, "
                      f"{env_steps:,} env steps; checkpoint {saved}", file=sys.stderr)
                break
    except KeyboardInterrupt:
        wall = wall_before + time.monotonic() - start
        save_checkpoint(checkpoint, alg, config, iteration, env_steps, wall)
        print(f"\ninterrupted: checkpoint saved to {checkpoint} (resume with --resume {out})", file=sys.stderr)
    finally:
        iterations.close()
        bar.close()
        writer.close()
        progress_file.close()
        env.close()
    return checkpoint
