"""``pupper-eval``: a policy file run through onnxruntime (not torch) in the randomized environment over a fixed
suite of commands, in either physics engine (``--engine``); writes metrics JSON, plots of commanded against measured
velocity, and optionally a GIF. In MuJoCo the physics step is the reference model's 4 ms, and every episode of every
command runs at once, one robot each in the batched environment; in PyBullet each command's episodes run in turn.

Tracking error is measured on velocities averaged over 1 s windows (two and a half gait cycles, so the stride's own
oscillation is not counted as error), after a 1 s settling time at the start of each episode.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pupper_ros.command_suite import command_suite

WINDOW_SECONDS = 1.0
SETTLE_SECONDS = 1.0
BAR = {"linear_error": 0.08, "yaw_error": 0.2, "standing_drift": 0.05}


@dataclass
class EpisodeResult:
    fell: bool
    seconds: float
    linear_error: float  # m/s
    yaw_error: float  # rad/s
    drift: float  # m/s, mean horizontal speed (meaningful when standing)
    distance: float  # m, start to end in the plane
    energy: float  # J, integral of |torque * joint velocity|
    trace: dict  # time, commanded and measured windows for plots


def run_episode(env, policy, command, seconds: float, seed: int, frames: list | None = None) -> EpisodeResult:
    obs, _ = env.reset(seed=seed, options={"command": command})
    start = env.sim.state().base_position.copy()
    steps = int(round(seconds / env.dt))
    velocity = np.zeros((steps, 3))  # vx, vy (body), yaw rate
    energy, fell, taken = 0.0, False, 0
    for k in range(steps):
        obs, _, terminated, _, info = env.step(policy(obs))
        velocity[k, :2] = info["base_linear_velocity"][:2]
        velocity[k, 2] = info["base_angular_velocity"][2]
        energy += float(np.sum(np.abs(info["joint_torque"] * info["joint_velocity"]))) * env.dt
        taken = k + 1
        if frames is not None and k % 2 == 0:
            frames.append(env.render())
        if terminated:
            fell = True
            break
    end = env.sim.state().base_position
    return episode_result(velocity, taken, fell, command, start, end, energy, env.dt)


def episode_result(velocity: np.ndarray, taken: int, fell: bool, command, start, end, energy: float,
                   dt: float) -> EpisodeResult:
    """An episode's figures from its per-step (vx, vy, yaw rate) over the ``taken`` steps it lasted."""
    window = int(round(WINDOW_SECONDS / dt))
    settle = int(round(SETTLE_SECONDS / dt))
    usable = velocity[settle:taken]
    n_windows = len(usable) // window
    if n_windows:
        means = usable[: n_windows * window].reshape(n_windows, window, 3).mean(axis=1)
    elif len(usable):
        means = usable.mean(axis=0, keepdims=True)
    else:  # fell while settling: no velocity to judge, the fall is counted
        means = np.full((1, 3), np.nan)
    cmd = np.asarray(command)
    return EpisodeResult(
        fell=fell,
        seconds=taken * dt,
        linear_error=float(np.mean(np.linalg.norm(means[:, :2] - cmd[:2], axis=1))),
        yaw_error=float(np.mean(np.abs(means[:, 2] - cmd[2]))),
        drift=float(np.mean(np.linalg.norm(means[:, :2], axis=1))),
        distance=float(np.linalg.norm(end[:2] - start[:2])),
        energy=energy,
        trace={"t": (SETTLE_SECONDS + WINDOW_SECONDS * (np.arange(len(means)) + 0.5)).tolist(), "measured": means.tolist()},
    )


def engine_overrides(engine: str) -> dict:
    """The env settings that put an evaluation in ``engine``: the engine, at the robot profile's physics step for it
    (in MuJoCo at most the reference model's 4 ms; ``pupper_ros.sim.default_physics_dt``)."""
    return {"engine": engine, "physics_dt": 0.0}


def evaluation_config(robot: str, engine: str, seconds: float, latency: float | None = None, reference: bool = False,
                      implicit_pd: bool = False):
    """The training config an evaluation runs: its robot and engine, episodes long enough, and for the robustness
    checks the Pupper v3 reference randomization ranges (training/config.py, wider than training/recipes/default.yaml's)
    and a fixed action latency; in MuJoCo optionally the implicit PD (``env.implicit_pd``)."""
    from training.config import load_config

    overrides = {"robot": robot, "env": {"episode_seconds": seconds + 1.0} | engine_overrides(engine)}
    if implicit_pd:
        overrides["env"]["implicit_pd"] = True
    if reference:
        overrides["randomization"] = {"ranges": "reference"}
    if latency is not None:  # a fixed action latency instead of the randomized one
        overrides.setdefault("randomization", {})["latency_seconds"] = [latency, latency]
    return load_config(overrides=overrides)


def _evaluate_command(args):
    name, command, policy_path, episodes, seconds, randomize, seed, robot, engine, latency, reference = args
    from pupper_ros.policy import load_policy
    from pupper_ros.robot_profile import load_robot_profile
    from training.env import PupperEnv

    env = PupperEnv(evaluation_config(robot, engine, seconds, latency, reference), randomize=randomize)
    policy = load_policy(policy_path, load_robot_profile(robot))
    results = [run_episode(env, policy, command, seconds, seed + i) for i in range(episodes)]
    env.close()
    return name, command, results


def evaluate_batched(commands: dict, policy_path, episodes: int, seconds: float, randomize: bool, seed: int,
                     robot: str, latency: float | None, reference: bool, implicit_pd: bool = False) -> list:
    """Every episode of every command at once, one robot each in a MuJoCo batch (training/batch_env.py); the same
    per-episode figures as ``run_episode``. A robot that falls is judged on the steps before its fall."""
    from pupper_ros.policy import load_policy
    from pupper_ros.robot_profile import load_robot_profile
    from training.batch_env import BatchedPupperEnv

    names = list(commands)
    config = evaluation_config(robot, "mujoco", seconds, latency, reference, implicit_pd)
    config.seed = seed
    robots = len(names) * episodes
    env = BatchedPupperEnv(config, robots, randomize=randomize)
    policy = load_policy(policy_path, load_robot_profile(robot))
    held = np.repeat(np.array([commands[name] for name in names], dtype=np.float64), episodes, axis=0)
    obs = env.hold_commands(held)
    start = env.sim.base_pose()[0]
    end = start.copy()
    steps = int(round(seconds / env.dt))
    velocity = np.zeros((robots, steps, 3))
    energy = np.zeros(robots)
    taken = np.full(robots, steps)
    fell = np.zeros(robots, dtype=bool)
    for k in range(steps):
        obs, _, terminated, _, info = env.step(policy.run_batch(obs))
        live = ~fell
        velocity[:, k, :2] = info["base_linear_velocity"][:, :2]
        velocity[:, k, 2] = info["base_angular_velocity"][:, 2]
        energy += np.sum(np.abs(info["joint_torque"] * info["joint_velocity"]), axis=1) * env.dt * live
        end[live] = info["base_position"][live]
        falling = terminated & live
        taken[falling] = k + 1
        fell |= falling
    outputs = []
    for c, name in enumerate(names):
        ids = range(c * episodes, (c + 1) * episodes)
        outputs.append((name, commands[name], [episode_result(velocity[i], int(taken[i]), bool(fell[i]), commands[name],
                                                              start[i], end[i], float(energy[i]), env.dt) for i in ids]))
    return outputs


def _mean_of_judged(values) -> float:
    """The mean over episodes that lasted past the settling time (NaN if none did)."""
    judged = [v for v in values if np.isfinite(v)]
    return float(np.mean(judged)) if judged else float("nan")


def summarize(name: str, command, results: list[EpisodeResult]) -> dict:
    return {
        "command": {"vx": command[0], "vy": command[1], "yaw_rate": command[2]},
        "episodes": len(results),
        "falls": sum(r.fell for r in results),
        "linear_tracking_error": _mean_of_judged([r.linear_error for r in results]),
        "yaw_tracking_error": _mean_of_judged([r.yaw_error for r in results]),
        "drift": _mean_of_judged([r.drift for r in results]),
        "distance": float(np.mean([r.distance for r in results])),
        "energy": float(np.mean([r.energy for r in results])),
    }


def passes_bar(metrics: dict) -> tuple[bool, list[str]]:
    failures = []
    for name, m in metrics["commands"].items():
        if m["falls"]:
            failures.append(f"{name}: {m['falls']} fall(s)")
        if name == "stand":
            if m["drift"] > BAR["standing_drift"]:
                failures.append(f"stand: drift {m['drift']:.3f} m/s > {BAR['standing_drift']}")
            continue
        if m["linear_tracking_error"] > BAR["linear_error"]:
            failures.append(f"{name}: linear error {m['linear_tracking_error']:.3f} m/s > {BAR['linear_error']}")
        if m["yaw_tracking_error"] > BAR["yaw_error"]:
            failures.append(f"{name}: yaw error {m['yaw_tracking_error']:.3f} rad/s > {BAR['yaw_error']}")
    return not failures, failures


def evaluate(policy_path: Path, out_dir: Path, episodes: int = 20, seconds: float = 10.0, randomize: bool = True,
             seed: int = 1000, commands: dict | None = None, workers: int = 0, robot: str = "pupper_v3",
             engine: str = "pybullet", latency: float | None = None, reference_randomization: bool = False,
             implicit_pd: bool = False) -> dict:
    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.sim import check_engine

    check_engine(engine)
    if implicit_pd and engine != "mujoco":
        raise ValueError(f"the implicit PD is MuJoCo's; this evaluation runs in {engine}")
    commands = commands or command_suite(load_robot_profile(robot))
    jobs = [(name, cmd, str(policy_path), episodes, seconds, randomize, seed, robot, engine, latency,
             reference_randomization) for name, cmd in commands.items()]
    workers = workers or min(len(jobs), mp.cpu_count() or 1)
    if engine == "mujoco":  # every episode in one batch
        outputs = evaluate_batched(commands, policy_path, episodes, seconds, randomize, seed, robot, latency,
                                   reference_randomization, implicit_pd)
    elif workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            outputs = pool.map(_evaluate_command, jobs)
    else:
        outputs = [_evaluate_command(j) for j in jobs]
    metrics = {
        "policy": str(policy_path),
        "robot": robot,
        "engine": engine,
        "fixed_action_latency": latency,
        "reference_randomization": reference_randomization,
        "implicit_pd": implicit_pd,
        "episodes_per_command": episodes,
        "episode_seconds": seconds,
        "randomized_dynamics": randomize,
        "seed": seed,
        "window_seconds": WINDOW_SECONDS,
        "settle_seconds": SETTLE_SECONDS,
        "commands": {name: summarize(name, cmd, results) for name, cmd, results in outputs},
    }
    ok, failures = passes_bar(metrics)
    metrics["bar"] = dict(BAR, passed=ok, failures=failures)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval_metrics.json").write_text(json.dumps(metrics, indent=2))
    from training.evaluation_plots import velocity_plot

    velocity_plot({name: (cmd, results[0].trace) for name, cmd, results in outputs}, out_dir / "eval_velocity.png")
    return metrics


def record_gif(policy_path: Path, path: Path, command, seconds: float = 5.0, robot: str = "pupper_v3") -> None:
    from PIL import Image

    from pupper_ros.policy import load_policy
    from pupper_ros.robot_profile import load_robot_profile
    from training.config import load_config
    from training.env import PupperEnv

    env = PupperEnv(load_config(overrides={"robot": robot}), render_mode="rgb_array", randomize=False)
    frames: list = []
    run_episode(env, load_policy(policy_path, load_robot_profile(robot)), command, seconds, 0, frames)
    env.close()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 * 2 * env.dt), loop=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pupper-eval", description="Evaluate an ONNX Pupper policy in simulation (onnxruntime).")
    parser.add_argument("policy", type=Path, help="the .onnx policy file")
    parser.add_argument("-o", "--out", type=Path, default=Path("eval"), help="directory for metrics JSON and plots")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per command")
    parser.add_argument("--seconds", type=float, default=10.0, help="episode length")
    parser.add_argument("--no-randomize", action="store_true", help="nominal dynamics, no noise or pushes")
    parser.add_argument("--command", nargs=3, type=float, metavar=("VX", "VY", "YAW"), help="evaluate this command only")
    parser.add_argument("--video", type=Path, help="also write an animated GIF of a forward walk (TinyRenderer)")
    parser.add_argument("--workers", type=int, default=0, help="processes (0 = one per core)")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--engine", default="pybullet", help="physics engine: pybullet or mujoco (extra 'mujoco')")
    parser.add_argument("--robot", default="pupper_v3", help="the robot the policy is for (a profile name)")
    parser.add_argument("--latency", type=float, metavar="SECONDS", help="a fixed action latency (robustness check)")
    parser.add_argument("--reference-randomization", action="store_true",
                        help="randomize over the Pupper v3 reference ranges (training/config.py's RandomizationConfig, "
                             "'ranges: reference' in a recipe) instead of the training config's (robustness check)")
    parser.add_argument("--implicit-pd", action="store_true",
                        help="MuJoCo only: the PD as implicit actuators at 4 ms (pupper_ros/sim/mujoco_sim.py)")
    args = parser.parse_args(argv)
    if args.implicit_pd and args.engine != "mujoco":
        print(f"pupper-eval: --implicit-pd is MuJoCo's PD; add --engine mujoco (got --engine {args.engine})",
              file=sys.stderr)
        return 2

    from pupper_ros.policy import PolicyLoadError, load_policy
    from pupper_ros.robot_profile import load_robot_profile
    from pupper_ros.sim import EngineError, check_engine

    try:
        check_engine(args.engine)
    except EngineError as exc:
        print(f"pupper-eval: {exc}", file=sys.stderr)
        return 2

    from pupper_ros.robot_profile import ProfileError

    try:
        load_policy(args.policy, load_robot_profile(args.robot))
    except (PolicyLoadError, ProfileError) as exc:
        print(f"pupper-eval: {exc}", file=sys.stderr)
        return 2
    commands = {"custom": tuple(args.command)} if args.command else None
    metrics = evaluate(args.policy, args.out, args.episodes, args.seconds, not args.no_randomize, args.seed, commands, args.workers,
                       robot=args.robot, engine=args.engine, latency=args.latency,
                       reference_randomization=args.reference_randomization, implicit_pd=args.implicit_pd)
    print(f"{'command':14s} {'falls':>5s} {'lin err':>8s} {'yaw err':>8s} {'drift':>7s} {'dist m':>7s} {'energy J':>9s}")
    for name, m in metrics["commands"].items():
        print(f"{name:14s} {m['falls']:5d} {m['linear_tracking_error']:8.3f} {m['yaw_tracking_error']:8.3f} "
              f"{m['drift']:7.3f} {m['distance']:7.2f} {m['energy']:9.1f}")
    bar = metrics["bar"]
    print(f"engine: {args.engine}; bar: " + ("PASSED" if bar["passed"] else "not met: " + "; ".join(bar["failures"])))
    print(f"wrote {args.out / 'eval_metrics.json'} and {args.out / 'eval_velocity.png'}")
    if args.video:
        forward = next(c for name, c in command_suite(load_robot_profile(args.robot)).items() if name.startswith("forward"))
        record_gif(args.policy, args.video, forward, robot=args.robot)
        print(f"wrote {args.video}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
