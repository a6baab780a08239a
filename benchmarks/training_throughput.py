"""Training throughput, measured side by side in one run on this machine:

  physics speed of each engine for the Pupper, PD included, in simulated seconds per second (PyBullet with the rotor
  actuator model, PyBullet with the former shortcut of armature on the link inertias, PyBullet without armature at
  the 1 ms step its explicit PD then needs, MuJoCo),
  environment steps/s in one process (PD at every physics step, sensors, rewards, randomization), in PyBullet with
  the rotor model (training's), with the former shortcut, and in MuJoCo,
  vectorized environment steps/s on all cores, stepped one step at a time (rsl_rl's VecEnv.step) and collecting
  whole rollouts in the workers (how training collects),
  the whole training loop (collection + PPO update) steps/s, with the default config and with variants (overlap, a cheaper update, MuJoCo),
and the ratios between them, plus the peak resident memory of the training processes.

The machine is a shared VM whose speed drifts by 10-20 % from one minute to the next, so every figure is measured
in several rounds, one after another; a ratio is taken within a round and the median over the rounds is printed with
its range.

Usage: python benchmarks/training_throughput.py [--seconds S] [--rounds R] [--batch | --pybullet-batch | --ray |
                                              --implicit-pd]

--batch measures the batched path side by side: one MuJoCo robot's physics on one core, the physics ceiling of
Pupper v3 robots in one MuJoCo batch (pupper_ros/sim/mujoco_batch.py) on all cores, the batched environment and the
batched training loop (training/recipes/pupper_v3_walk_mujoco_batch.yaml) as fractions of it, that loop against the
same loop with the batch on the trainer's thread (where it ran until 2026-12-07), and against the worker loop.

--pybullet-batch measures PyBullet behind the batch interface (pupper_ros/sim/pybullet_batch.py): one robot's
physics, the batch's physics and the batched environment on one core, and the default config's training loop with
the batch in worker processes, with the batch on the trainer's thread and with today's per-robot workers.

--implicit-pd measures MuJoCo's physics speed for each robot with the explicit PD at the profile's step (Pupper v2:
0.5 ms) and with the PD as implicit actuators at 4 ms (``implicit_pd``), side by side per round.

--ray measures the batched recipe's loop on this machine and the same loop with its batches in Ray actors (a Ray
started here, one actor per core), side by side per round; the bytes a rollout and an actor snapshot move; and the
per-actor costs a cluster estimate is built from (one actor's collection per sample, through Ray and in-process, and
the update per sample in the driver).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


PHYSICS_VARIANTS = {  # label -> (engine, simulation options, armature or None for the profile's)
    "pybullet": ("pybullet", {}, None),
    "pybullet, armature on links (before)": ("pybullet", {"armature_model": "link"}, None),
    "pybullet, no armature, 1 ms step": ("pybullet", {"physics_dt": 0.001}, 0.0),
    "mujoco": ("mujoco", {}, None),
}


def physics_rate(seconds: float, engine: str, options: dict, armature: float | None, robot: str = "pupper_v3") -> float:
    """Simulated seconds per wall-clock second, the robot standing on its PD (steps differ between variants)."""
    import dataclasses

    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.sim import make_simulation

    profile = load_robot_profile(robot)
    if armature is not None:
        profile = dataclasses.replace(profile, actuator=dataclasses.replace(profile.actuator, armature=armature))
    sim = make_simulation(profile, engine, **options)
    sim.reset()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sim.step(100)
        n += 100
    rate = n * sim.physics_dt / (time.perf_counter() - start)
    sim.close()
    return rate


def batch_physics_rate(seconds: float, robots: int, threads: int = 0) -> float:
    """The physics ceiling: env steps/s (a policy step of physics each) of ``robots`` Pupper v3 in one MuJoCo batch
    on every core (``threads`` 0), standing on their PD with fixed targets, PD and stepping as MujocoBatch does."""
    from pupper_ros.contract import CURRENT_CONTRACT
    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.sim.mujoco_batch import MujocoBatch

    batch = MujocoBatch(load_robot_profile(), robots, threads=threads)
    substeps = round(CURRENT_CONTRACT.control_period / batch.physics_dt)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch.step(substeps)
        n += robots
    return n / (time.perf_counter() - start)


def single_env_rate(seconds: float, engine: str = "pybullet", options: dict | None = None) -> tuple[float, int]:
    from pupper_ros.sim import make_simulation
    from training.config import load_config
    from training.env import PupperEnv

    env = PupperEnv(load_config(overrides={"env": {"engine": engine}}))
    if options:  # the same environment over a simulation built another way
        env.sim.close()
        env.sim = make_simulation(env.profile, engine, physics_dt=env.physics_dt, **options)
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
    from training.ppo_adapter import build_algorithm
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
    from training.ppo_adapter import build_algorithm
    from training.runner import training_iterations
    from training.vec_env import PupperVecEnv

    config = load_config(overrides=overrides)
    torch.set_num_threads(1)
    env = PupperVecEnv(config)
    alg = build_algorithm(config, env)
    alg.train_mode()
    rate = iteration_rate(seconds, training_iterations(alg, env, config), config)
    memory = peak_rss_mb([os.getpid()] + [p.pid for p in env._procs])
    env.close()
    return rate, memory


def iteration_rate(seconds: float, iterations, config) -> float:
    """Env steps/s of a training loop's iterations over ``seconds``, after one warm-up iteration; closes them."""
    next(iterations)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterations)
        n += config.envs * config.ppo.steps_per_env
    rate = n / (time.perf_counter() - start)
    iterations.close()
    return rate


def batched_env_rate(seconds: float, robots: int, robot: str = "pupper_v3", implicit_pd: bool = False,
                     engine: str = "mujoco", fixed_targets: bool = False) -> float:
    """The batched environment (observations, rewards, resets, randomization) with random actions, env steps/s.
    ``fixed_targets``: the batch's physics alone, the robots standing on their PD (the engine's ceiling)."""
    from training.batch_env import BatchedPupperEnv
    from training.config import load_config

    config = load_config(overrides={"robot": robot, "env": {"engine": engine, "implicit_pd": implicit_pd}})
    env = BatchedPupperEnv(config, robots)
    if fixed_targets:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            env.sim.step(env.decimation)
            n += robots
        rate = n / (time.perf_counter() - start)
        env.close()
        return rate
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (50, robots, 12))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[(n // robots) % 50])
        n += robots
    rate = n / (time.perf_counter() - start)
    env.close()
    return rate


def batched_loop_rate(seconds: float, config_path: Path | None, overrides: dict | None = None,
                      on_thread: bool = False) -> tuple[float, float]:
    """The whole batched training loop (collection and PPO update) with a recipe, env steps/s and peak memory of the
    trainer and its worker processes, if any. ``on_thread``: the batch on a thread of the trainer's process whatever
    training would choose (``training.runner.batch_processes``)."""
    import torch

    from training.batch_vec_env import BatchVecEnv
    from training.config import load_config
    from training.ppo_adapter import build_algorithm
    from training.runner import make_env, training_iterations

    config = load_config(config_path, overrides)
    env = BatchVecEnv(config) if on_thread else make_env(config)
    alg = build_algorithm(config, env)
    alg.train_mode()
    rate = iteration_rate(seconds, training_iterations(alg, env, config), config)
    workers = [process.pid for process, _ in getattr(env, "_handles", [])]
    memory = peak_rss_mb([os.getpid()] + workers)
    env.close()
    torch.set_num_threads(1)
    return rate, memory


def batched_loop_rate_through_ray(seconds: float, config_path: Path, actors: int | None = None) -> float:
    """The batched training loop with its batches in Ray actors (``pupper-train --ray``), env steps/s."""
    import torch

    from training.config import load_config
    from training.ppo_adapter import build_algorithm
    from training.ray_vec_env import RaySettings, RayVecEnv
    from training.runner import training_iterations

    config = load_config(config_path)
    env = RayVecEnv(config, RaySettings(actors=actors))
    alg = build_algorithm(config, env)
    alg.train_mode()
    rate = iteration_rate(seconds, training_iterations(alg, env, config), config)
    env.close()
    torch.set_num_threads(1)
    return rate


def microseconds_per_sample(action, samples: int, seconds: float) -> float:
    """Wall-clock of ``action`` per sample, ``samples`` a call, repeated for ``seconds`` after one warm-up call."""
    action()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        action()
        n += samples
    return (time.perf_counter() - start) / n * 1e6


def collection_costs_of_one_actor(seconds: float, config_path: Path) -> dict[str, float]:
    """Microseconds per sample of collecting the recipe's rollout on one core: in this process (a ``BatchCollector``,
    one MuJoCo thread) and through one Ray actor (the same, plus the snapshot going out and the rollout coming
    back); the bytes of the rollout and of the snapshot as pickled (numpy arrays out of band, as Ray moves them)."""
    import pickle

    from training.actor_snapshot import take_snapshot
    from training.batch_collector import BatchCollector
    from training.config import load_config
    from training.ppo_adapter import build_algorithm
    from training.ray_vec_env import RaySettings, RayVecEnv

    config = load_config(config_path)
    steps, samples = config.ppo.steps_per_env, config.envs * config.ppo.steps_per_env

    def per_sample(action) -> float:
        return microseconds_per_sample(action, samples, seconds / 2)

    env = RayVecEnv(config, RaySettings(actors=1))
    snapshot = take_snapshot(build_algorithm(config, env).actor)
    rollouts: list = []

    def through_ray():
        env.start_rollout(snapshot, steps)
        rollouts.append(env.finish_rollout())

    figures = {"ray_collect_us": per_sample(through_ray)}
    env.close()
    local = BatchCollector(config, threads=1)
    figures["local_collect_us"] = per_sample(lambda: local.rollout(snapshot, steps))

    def pickled_bytes(obj) -> int:
        buffers: list = []
        head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        return len(head) + sum(b.raw().nbytes for b in buffers)

    figures["rollout_bytes"], figures["snapshot_bytes"] = pickled_bytes(rollouts[-1]), pickled_bytes(snapshot)
    return figures


def batched_costs(seconds: float, config_path: Path) -> tuple[float, float]:
    """Microseconds per sample of the batched recipe's two halves, each alone: collecting a rollout (physics,
    environment and the numpy actor, where training collects it) and the PPO update on one
    (rsl-rl-lib, mirrored mini-batches, every core)."""
    import torch

    from training.actor_snapshot import take_snapshot
    from training.config import load_config
    from training.ppo_adapter import build_algorithm, learn_from_rollout
    from training.runner import make_env

    config = load_config(config_path)
    env = make_env(config)
    alg = build_algorithm(config, env)
    alg.train_mode()
    steps, samples = config.ppo.steps_per_env, config.envs * config.ppo.steps_per_env

    def timed(action) -> float:
        return microseconds_per_sample(action, samples, seconds / 2)

    def collect():
        env.start_rollout(take_snapshot(alg.actor), steps)
        collected.append(env.finish_rollout())

    collected: list = []
    collection = timed(collect)
    torch.set_num_threads(os.cpu_count() or 1)
    update = timed(lambda: learn_from_rollout(alg, collected[-1]))
    torch.set_num_threads(1)
    env.close()
    return collection, update


VARIANTS = [  # training-loop variants measured beside the default config: (label, config overrides)
    ("with ppo.overlap_update", {"ppo": {"overlap_update": True}}),
    # legged_gym's flat-terrain networks and 3 epochs: a cheaper update, which needed 1.8x the samples to walk
    ("with a cheaper update (3 epochs, [128,64,32])",
     {"ppo": {"learning_epochs": 3}, "policy": {"actor_hidden": [128, 64, 32], "critic_hidden": [128, 64, 32]}}),
    # training/recipes/pupper_v3_walk_mujoco.yaml: collection is cheap there, so the update's share of the loop grows
    ("in mujoco (env.engine)", {"env": {"engine": "mujoco"}}),
    ("in mujoco with ppo.overlap_update", {"env": {"engine": "mujoco"}, "ppo": {"overlap_update": True}}),
]


def measure_round(seconds: float) -> tuple[dict[str, float], int, float]:
    """Every figure once, one after another: (rates by name, decimation, peak memory of the default loop)."""
    rates = {f"physics {label}": physics_rate(seconds, *variant) for label, variant in PHYSICS_VARIANTS.items()}
    rates["single"], decimation = single_env_rate(seconds)
    rates["single, armature on links (before)"], _ = single_env_rate(seconds, options={"armature_model": "link"})
    rates["single, mujoco"], _ = single_env_rate(seconds, "mujoco")
    rates["vector"] = vector_env_rate(seconds, 32)
    rates["rollouts"] = rollout_rate(seconds)
    rates["training"], memory = training_loop_rate(seconds)
    for label, overrides in VARIANTS:
        rates[label], _ = training_loop_rate(seconds, overrides)
    return rates, decimation, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per figure and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every figure; ratios are taken within a round")
    parser.add_argument("--batch", action="store_true",
                        help="the batched path: physics ceiling, batched environment and loop, against the worker loop")
    parser.add_argument("--implicit-pd", action="store_true",
                        help="MuJoCo physics speed, explicit PD at the profile's step against implicit PD at 4 ms")
    parser.add_argument("--pybullet-batch", action="store_true",
                        help="PyBullet behind the batch interface: its ceiling, batched environment and loop")
    parser.add_argument("--ray", action="store_true",
                        help="the batched loop through Ray actors against the same loop on this machine, bytes moved")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.batch + args.ray + args.implicit_pd + args.pybullet_batch > 1:
        parser.error("one of --batch, --pybullet-batch, --ray, --implicit-pd")
    if args.pybullet_batch:
        return pybullet_batch_figures(args)
    if args.implicit_pd:
        return implicit_pd_figures(args)
    if args.batch:
        return physics_ceiling(args)
    if args.ray:
        return ray_figures(args)
    rounds, memory = [], 0.0
    for r in range(args.rounds):
        rates, decimation, peak = measure_round(args.seconds)
        rounds.append(rates)
        memory = max(memory, peak)
        print(f"round {r + 1}/{args.rounds}: one env {rates['single']:.0f}, loop {rates['training']:.0f} env steps/s", flush=True)

    def rate(name):  # median over the rounds
        return float(np.median([r[name] for r in rounds]))

    def ratio(name):  # median and range of the within-round ratios to one environment
        values = [r[name] / r["single"] for r in rounds]
        return f"{np.median(values):.2f}x one environment (rounds {min(values):.2f}-{max(values):.2f})"

    def against(name, reference):  # median and range of within-round ratios between two figures
        values = [r[name] / r[reference] for r in rounds]
        return f"{np.median(values):.2f}x (rounds {min(values):.2f}-{max(values):.2f})"

    from pupper_ros.contract import CURRENT_CONTRACT

    single_share = [r["single"] * CURRENT_CONTRACT.control_period / r["physics pybullet"] for r in rounds]
    print(f"machine: {cores} cores; policy step = {decimation} physics steps; medians of {args.rounds} rounds of "
          f"{args.seconds:.0f} s per figure")
    for label in PHYSICS_VARIANTS:
        print(f"physics, {label:38s} {rate('physics ' + label):6.1f} simulated s per s (PD included, one core) = "
              f"{against('physics ' + label, 'physics pybullet')} PyBullet's")
    print(f"one environment               {rate('single'):10.0f} env steps/s       = "
          f"{np.median(single_share):.2f} of its physics (rounds {min(single_share):.2f}-{max(single_share):.2f})")
    for label in ("single, armature on links (before)", "single, mujoco"):
        print(f"  {label}: {rate(label):.0f} env steps/s = {against(label, 'single')} the rotor model's")
    print(f"vectorized, {cores} workers, 32 envs {rate('vector'):8.0f} env steps/s       = {ratio('vector')}"
          "  (step by step, rsl_rl's VecEnv.step)")
    print(f"  rollouts in the workers     {rate('rollouts'):10.0f} env steps/s       = {ratio('rollouts')}"
          "  (as training collects)")
    print(f"training loop (PPO included)  {rate('training'):10.0f} env steps/s       = {ratio('training')}"
          "  (default config)")
    for label, _ in VARIANTS:
        print(f"  {label}: {rate(label):.0f} env steps/s = {ratio(label)}")
    print(f"peak resident memory of training (trainer + workers): {memory:.0f} MB")
    return 0


BATCH_SIZES = (64, 256, 1024)


def mujoco_recipe() -> Path:
    from training.config import RECIPES

    return RECIPES / "pupper_v3_walk_mujoco_batch.yaml"


def physics_ceiling(args) -> int:
    """The batch, side by side per round: one MuJoCo robot's physics (one core, as one environment has it), the
    batch's physics on all cores, the batched environment, the batched training loop (and the same with the batch on
    the trainer's thread), and today's worker loop in
    MuJoCo (the per-robot environments in worker processes, update overlapped) for comparison."""
    from pupper_ros.contract import CURRENT_CONTRACT
    from training.config import load_config

    robots = load_config(mujoco_recipe()).envs
    sizes = sorted(set(BATCH_SIZES) | {robots})  # the recipe's batch is the ceiling its loop is held to
    rounds, memory = [], 0.0
    for _ in range(args.rounds):
        figures = {"single": physics_rate(args.seconds, *PHYSICS_VARIANTS["mujoco"]) / CURRENT_CONTRACT.control_period}
        for size in sizes:
            figures[size] = batch_physics_rate(args.seconds, size)
        figures["env"] = batched_env_rate(args.seconds, robots)
        figures["loop"], peak = batched_loop_rate(args.seconds, mujoco_recipe())
        figures["loop_thread"], _ = batched_loop_rate(args.seconds, mujoco_recipe(), on_thread=True)
        figures["collect_us"], figures["update_us"] = batched_costs(args.seconds, mujoco_recipe())
        memory = max(memory, peak)
        figures["workers"], _ = training_loop_rate(args.seconds, {"env": {"engine": "mujoco"}, "ppo": {"overlap_update": True}})
        rounds.append(figures)

    def median(key):
        return float(np.median([r[key] for r in rounds]))

    def against(key, reference):
        values = [r[key] / r[reference] for r in rounds]
        return f"{np.median(values):.2f}x (rounds {min(values):.2f}-{max(values):.2f})"

    print(f"machine: {os.cpu_count()} cores; medians of {args.rounds} rounds of {args.seconds:.0f} s per figure")
    print(f"physics, one MuJoCo robot standing on its PD, one core: {median('single'):8.0f} env steps/s")
    for size in sizes:
        print(f"physics, MuJoCo batch of {size:4d} standing, all cores:    {median(size):8.0f} env steps/s = "
              f"{against(size, 'single')} one robot")
    print(f"batched environment, {robots} robots, random actions:  {median('env'):8.0f} env steps/s = "
          f"{against('env', robots)} of the {robots}-robot ceiling")
    print(f"batched training loop ({mujoco_recipe().name}):      {median('loop'):8.0f} env steps/s = "
          f"{against('loop', robots)} of the ceiling, {against('loop', 'workers')} the worker loop")
    print(f"the same loop with the batch on the trainer's thread:  {median('loop_thread'):8.0f} env steps/s; the worker "
          f"process's loop {against('loop', 'loop_thread')} this")
    print(f"batched recipe, each half alone: collection {median('collect_us'):.0f} us per sample, PPO update "
          f"{median('update_us'):.0f} us per sample")
    print(f"worker loop in MuJoCo (32 envs, update overlapped):    {median('workers'):8.0f} env steps/s")
    print(f"peak resident memory of the batched loop: {memory:.0f} MB")
    return 0


def pybullet_batch_figures(args) -> int:
    """PyBullet behind the batch interface, side by side per round: one robot's physics (one core), a batch of the
    default config's robots standing (one core), the batched environment, one per-robot environment, and the default
    config's training loop three ways: the batch in worker processes (``env.batched``), the batch on the trainer's
    collector thread, and today's per-robot environments in worker processes."""
    from pupper_ros.contract import CURRENT_CONTRACT
    from training.config import load_config

    robots = load_config().envs
    batched = {"env": {"batched": True}}
    rounds, memory = [], 0.0
    for r in range(args.rounds):
        figures = {"single": physics_rate(args.seconds, *PHYSICS_VARIANTS["pybullet"]) / CURRENT_CONTRACT.control_period}
        figures["batch"] = batched_env_rate(args.seconds, robots, engine="pybullet", fixed_targets=True)
        figures["env"] = batched_env_rate(args.seconds, robots, engine="pybullet")
        figures["one env"], _ = single_env_rate(args.seconds, "pybullet")
        figures["loop"], peak = batched_loop_rate(args.seconds, None, batched)
        figures["thread"], _ = batched_loop_rate(args.seconds, None, batched, on_thread=True)
        figures["workers"], _ = training_loop_rate(args.seconds)
        memory = max(memory, peak)
        rounds.append(figures)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v:.0f}" for k, v in figures.items()), flush=True)

    def median(key):
        return float(np.median([r[key] for r in rounds]))

    def against(key, reference):
        values = [r[key] / r[reference] for r in rounds]
        return f"{np.median(values):.2f}x (rounds {min(values):.2f}-{max(values):.2f})"

    cores = os.cpu_count() or 1
    print(f"machine: {cores} cores; medians of {args.rounds} rounds of {args.seconds:.0f} s per figure; Pupper v3, PyBullet")
    print(f"physics, one robot standing on its PD, one core:        {median('single'):7.0f} env steps/s")
    print(f"physics, a batch of {robots} standing, one core:            {median('batch'):7.0f} env steps/s = "
          f"{against('batch', 'single')} one robot")
    print(f"batched environment, {robots} robots, random actions:     {median('env'):7.0f} env steps/s = "
          f"{against('env', 'batch')} of the batch's physics, {against('env', 'one env')} one environment")
    print(f"one per-robot environment:                              {median('one env'):7.0f} env steps/s")
    print(f"training loop, default config, batch in {cores} worker processes: {median('loop'):7.0f} env steps/s = "
          f"{against('loop', 'workers')} the worker loop, {against('loop', 'batch')} of the one-core ceiling")
    print(f"training loop, default config, batch on the collector thread: {median('thread'):7.0f} env steps/s = "
          f"{against('thread', 'workers')} the worker loop")
    print(f"worker loop, default config (per-robot environments):   {median('workers'):7.0f} env steps/s")
    print(f"peak resident memory of the batched loop (trainer + workers): {memory:.0f} MB")
    return 0


def implicit_pd_figures(args) -> int:
    """Each robot standing in MuJoCo, simulated seconds per second: explicit PD at the profile's step (the default)
    against the PD as actuators under the implicitfast integrator at 4 ms; then Pupper v2's batched training
    environment (32 robots, random actions) both ways, env steps/s."""
    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.sim import default_physics_dt

    def side_by_side(label, explicit, implicit):
        rounds = [(explicit(), implicit()) for _ in range(args.rounds)]
        ratios = [i / e for e, i in rounds]
        print(f"{label}: explicit {np.median([r[0] for r in rounds]):.1f}, implicit {np.median([r[1] for r in rounds]):.1f}"
              f" = {np.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})", flush=True)

    for robot in ("pupper_v2", "pupper_v3"):
        profile = load_robot_profile(robot)
        side_by_side(f"{robot} standing, simulated s per s, explicit PD at "
                     f"{default_physics_dt(profile, 'mujoco') * 1000:g} ms, implicit at "
                     f"{default_physics_dt(profile, 'mujoco', True) * 1000:g} ms",
                     lambda: physics_rate(args.seconds, "mujoco", {}, None, robot),
                     lambda: physics_rate(args.seconds, "mujoco", {"implicit_pd": True}, None, robot))
    side_by_side("pupper_v2 batched environment, 32 robots, env steps/s",
                 lambda: batched_env_rate(args.seconds, 32, "pupper_v2"),
                 lambda: batched_env_rate(args.seconds, 32, "pupper_v2", implicit_pd=True))
    return 0


def ray_figures(args) -> int:
    """The batched loop on this machine and through Ray, side by side per round; the per-actor costs and bytes."""
    import ray

    from training.config import load_config

    cores = os.cpu_count() or 1
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    config = load_config(mujoco_recipe())
    rounds = []
    for _ in range(args.rounds):
        figures = {"local": batched_loop_rate(args.seconds, mujoco_recipe())[0],
                   "ray": batched_loop_rate_through_ray(args.seconds, mujoco_recipe())}
        figures |= collection_costs_of_one_actor(args.seconds, mujoco_recipe())
        figures["update_us"] = batched_costs(args.seconds, mujoco_recipe())[1]
        rounds.append(figures)
    ray.shutdown()

    def median(key):
        return float(np.median([r[key] for r in rounds]))

    ratios = [r["ray"] / r["local"] for r in rounds]
    samples = config.envs * config.ppo.steps_per_env
    print(f"machine: {cores} cores; {mujoco_recipe().name} ({config.envs} robots x {config.ppo.steps_per_env} steps); "
          f"medians of {args.rounds} rounds of {args.seconds:.0f} s per figure")
    print(f"batched loop on this machine:              {median('local'):8.0f} env steps/s")
    print(f"batched loop through Ray, {cores} actors:        {median('ray'):8.0f} env steps/s = "
          f"{np.median(ratios):.2f}x the local loop (rounds {min(ratios):.2f}-{max(ratios):.2f})")
    print(f"one actor's collection, one core: {median('ray_collect_us'):.0f} us per sample through Ray, "
          f"{median('local_collect_us'):.0f} us in-process")
    print(f"PPO update in the driver ({cores} threads): {median('update_us'):.0f} us per sample")
    print(f"bytes per iteration: rollout {median('rollout_bytes') / 1e3:.0f} kB ({median('rollout_bytes') / samples:.0f} "
          f"B per sample), actor snapshot {median('snapshot_bytes') / 1e3:.0f} kB to each actor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
