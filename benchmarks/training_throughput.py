"""Training throughput, measured side by side in one run on this machine:

  raw PyBullet physics steps/s for the Pupper (stepSimulation only: the limit),
  environment steps/s in one process (PD at every physics step, sensors, rewards, randomization),
  vectorized environment steps/s on all cores, stepped one step at a time (rsl_rl's VecEnv.step) and collecting
  whole rollouts in the workers (how training collects),
  the whole training loop (collection + PPO update) steps/s, with the default config and with two variants,
and the ratios between them, plus the peak resident memory of the training processes.

Usage: python benchmarks/training_throughput.py [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def raw_physics_rate(seconds: float) -> float:
    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.simulation import PupperSimulation

    sim = PupperSimulation(load_robot_profile())
    sim.reset()
    step = sim.client.stepSimulation
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            step()
        n += 100
    rate = n / (time.perf_counter() - start)
    sim.close()
    return rate


def single_env_rate(seconds: float) -> tuple[float, int]:
    from training.env import PupperEnv

    env = PupperEnv()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, (1000, 12)).astype(np.float32)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(actions[n % 1000])
        if terminated or truncated:
            env.reset()
        n += 1
    rate = n / (time.perf_counter() - start)
    decimation = env.decimation
    env.close()
    return rate, decimation


def vector_env_rate(seconds: float, envs: int) -> float:
    import torch

    from training.config import load_config
    from training.vec_env import PupperVecEnv

    env = PupperVecEnv(load_config(overrides={"envs": envs}))
    actions = torch.zeros(envs, 12)
    env.step(actions)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions.uniform_(-0.3, 0.3))
        n += envs
    rate = n / (time.perf_counter() - start)
    env.close()
    return rate


def rollout_rate(seconds: float) -> float:
    from training.actor_snapshot import take_snapshot
    from training.config import load_config
    from training.train import build_algorithm
    from training.vec_env import PupperVecEnv

    config = load_config()
    env = PupperVecEnv(config)
    actor = take_snapshot(build_algorithm(config, env).actor)
    steps = config.ppo.steps_per_env
    env.start_rollout(actor, steps)
    env.finish_rollout()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.start_rollout(actor, steps)
        env.finish_rollout()
        n += config.envs * steps
    rate = n / (time.perf_counter() - start)
    env.close()
    return rate


def peak_rss_mb(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return total


def training_loop_rate(seconds: float, overrides: dict | None = None) -> tuple[float, float]:
    import torch

    from training.config import load_config
    from training.train import build_algorithm, training_iterations
    from training.vec_env import PupperVecEnv

    config = load_config(overrides=overrides)
    torch.set_num_threads(1)
    env = PupperVecEnv(config)
    alg = build_algorithm(config, env)
    alg.train_mode()
    iterations = training_iterations(alg, env, config)
    next(iterations)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterations)
        n += config.envs * config.ppo.steps_per_env
    rate = n / (time.perf_counter() - start)
    memory = peak_rss_mb([os.getpid()] + [p.pid for p in env._procs])
    iterations.close()
    env.close()
    return rate, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time per figure")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    raw = raw_physics_rate(args.seconds)
    single, decimation = single_env_rate(args.seconds)
    vector = vector_env_rate(args.seconds, 32)
    rollouts = rollout_rate(args.seconds)
    training, memory = training_loop_rate(args.seconds)
    overlapped, _ = training_loop_rate(args.seconds, {"ppo": {"overlap_update": True}})
    lean, _ = training_loop_rate(args.seconds, {"ppo": {"overlap_update": True, "symmetry": False}})
    print(f"machine: {cores} cores; policy step = {decimation} physics steps")
    print(f"raw PyBullet physics          {raw:10.0f} physics steps/s   (the limit, one core)")
    print(f"one environment               {single:10.0f} env steps/s       = {single * decimation:.0f} physics steps/s, "
          f"{single * decimation / raw:.2f} of raw")
    print(f"vectorized, {cores} workers, 32 envs {vector:8.0f} env steps/s       = {vector / single:.2f}x one environment"
          "  (step by step, rsl_rl's VecEnv.step)")
    print(f"  rollouts in the workers     {rollouts:10.0f} env steps/s       = {rollouts / single:.2f}x one environment"
          "  (as training collects)")
    print(f"training loop (PPO included)  {training:10.0f} env steps/s       = {training / single:.2f}x one environment"
          "  (default config)")
    print(f"  with ppo.overlap_update     {overlapped:10.0f} env steps/s       = {overlapped / single:.2f}x one environment")
    print(f"  and without ppo.symmetry    {lean:10.0f} env steps/s       = {lean / single:.2f}x one environment")
    print(f"peak resident memory of training (trainer + workers): {memory:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
