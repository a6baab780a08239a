"""``pupper-train``: train a Pupper walking policy with PPO (rsl-rl-lib) in simulation; the command line over
``training.runner.train``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from pathlib import Path

from pupper_ros.sim import EngineError, check_engine
from training.config import ConfigError, load_config
from training.run_files import resolve_checkpoint
from training.runner import train


LOCAL_RAY = "local"  # --ray without an address: Ray's own name for a Ray started on this machine


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pupper-train", description="Train a Pupper walking policy with PPO in simulation (PyBullet or MuJoCo).")
    parser.add_argument("--config", type=Path, help="YAML file overriding training/recipes/default.yaml")
    parser.add_argument("--envs", type=int, help="number of parallel environments")
    parser.add_argument("--workers", type=int, help="environment worker processes (0 = one per core)")
    parser.add_argument("--steps", type=int, help="environment steps in total")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", type=Path, metavar="RUN", help="continue a run from its latest checkpoint")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<date-time>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=("pybullet", "mujoco"), help="physics engine (overrides env.engine)")
    parser.add_argument("--batched", action="store_true",
                        help="every robot's environment as arrays over a batch of robots (sets env.batched), collected "
                             "in worker processes (MuJoCo's in lockstep on the trainer's thread)")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes of wall clock, with a checkpoint")
    parser.add_argument("--ray", nargs="?", const=LOCAL_RAY, metavar="ADDRESS",
                        help="collect on batches of the config's engine in Ray actors (extra pupper_ros[ray]): 'auto' joins the running "
                             "cluster, an address joins that one, none starts Ray on this machine; sets env.batched")
    parser.add_argument("--ray-actors", type=int, metavar="N", help="with --ray: this many actors (default one per CPU)")
    args = parser.parse_args(argv)
    if args.minutes is not None and not args.minutes > 0:
        print(f"pupper-train: --minutes must be positive, got {args.minutes}", file=sys.stderr)
        return 2

    ray = None
    if args.ray_actors is not None and args.ray is None:
        print("pupper-train: --ray-actors needs --ray", file=sys.stderr)
        return 2
    if args.ray is not None:
        from training.ray_vec_env import RaySettings, RayUnavailable, import_ray

        try:
            import_ray()
        except RayUnavailable as exc:
            print(f"pupper-train: {exc}", file=sys.stderr)
            return 2
        ray = RaySettings(address=args.ray, actors=args.ray_actors)

    overrides = {k: v for k, v in (("envs", args.envs), ("workers", args.workers), ("steps", args.steps), ("seed", args.seed)) if v is not None}
    if args.engine is not None:
        overrides["env"] = {"engine": args.engine}
    if args.batched:
        overrides.setdefault("env", {})["batched"] = True
    resume = None
    try:
        config_path = args.config
        if args.resume is not None:
            resume = resolve_checkpoint(args.resume)
            if config_path is None:
                config_path = resume.parent.parent / "config.yaml"
        config = load_config(config_path, overrides)
        if ray is not None:
            config.env.batched = True
        check_engine(config.env.engine)
    except (ConfigError, EngineError, FileNotFoundError) as exc:
        print(f"pupper-train: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, `systemctl stop`: checkpoint and exit as on Ctrl-C
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with `&` from a script: Ctrl-C is ignored there
        signal.signal(signal.SIGINT, _interrupt)
    out = args.out or (resume.parent.parent if resume else Path("runs") / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    print(f"pupper-train: {config.envs} envs, {config.steps:,} steps, seed {config.seed}, run {out}")
    from pupper_ros.sim.robot_batch import BatchError

    refusals: tuple = (BatchError,)
    if ray is not None:
        from training.ray_vec_env import RayUnavailable

        refusals = (BatchError, RayUnavailable)
    try:
        checkpoint = train(config, out, resume, quiet=args.quiet, minutes=args.minutes, ray=ray)
    except refusals as exc:
        print(f"pupper-train: {exc}", file=sys.stderr)
        return 2
    print(f"pupper-train: latest checkpoint {checkpoint}; export with: pupper-export {out} -o model.onnx")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
