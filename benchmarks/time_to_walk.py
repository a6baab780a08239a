"""Time to walk: the wall-clock of `pupper-train` from its start to the first checkpoint that passes the bar in both
physics engines.

Walks a run's numbered checkpoints in order (every --stride-th), exports each to ONNX and screens it with a short
`pupper-eval` in MuJoCo (--screen-episodes per command, randomized, every episode at once on the batch); a
checkpoint that passes the screen gets the full bar (20 episodes of 10 s per command) in MuJoCo, then the screen
and the full bar in PyBullet.
Prints each checkpoint's figures and the first that passes both, with the wall-clock and steps recorded in the
checkpoint by the trainer.

Usage: python benchmarks/time_to_walk.py runs/NAME [--robot pupper_v3] [--stride 5] [--screen-episodes 3]
       [--from-iteration K] [--follow] [--reference-randomization]
       python benchmarks/time_to_walk.py --train RECIPE --seeds 1 2 3 --minutes M [--robot R] [--stride 5]

With --train it trains the recipe once per seed (`pupper-train --config RECIPE --seed S --minutes M`, one after
another, alone on the machine, into runs/ttw_<recipe>_s<S>), screens each run after it ends, and prints each seed's
time to walk and the median (a seed that did not walk within M minutes counts as more than M).

With --reference-randomization every screen and bar runs under the Pupper v3 reference ranges (`pupper-eval
--reference-randomization`): the time to a policy that walks on the robots of the reference's spread.

With --follow it also screens checkpoints the run writes while it trains, until none has come for --idle-minutes.
Run it niced beside a training run (`nice -n 5`): the screen then yields to the trainer. At `nice -n 19` beside
a trainer that keeps both cores busy it fell behind the checkpoints.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.evaluate import evaluate  # noqa: E402
from training.export import export_checkpoint  # noqa: E402


def _worst(values) -> float:
    """The largest of the figures that exist (a command whose every episode fell while settling has none)."""
    finite = [v for v in values if v == v]
    return max(finite) if finite else float("nan")


def summary(metrics: dict) -> str:
    cmds = metrics["commands"]
    worst_linear = _worst(m["linear_tracking_error"] for n, m in cmds.items() if n != "stand" and not n.startswith("turn"))
    worst_yaw = _worst(m["yaw_tracking_error"] for n, m in cmds.items() if n.startswith("turn"))
    falls = sum(m["falls"] for m in cmds.values())
    return f"worst linear error {worst_linear:.3f} m/s, worst yaw error {worst_yaw:.3f} rad/s, stand drift {cmds['stand']['drift']:.3f}, falls {falls}"


def shortfall(metrics: dict) -> float:
    """How far a screen is from the bar: the sum over commands of each error's excess over its limit, relative to
    the limit, plus one per fall. Zero passes."""
    from training.evaluate import BAR

    total = 0.0
    for name, m in metrics["commands"].items():
        total += m["falls"]
        if name == "stand":
            total += max(0.0, m["drift"] - BAR["standing_drift"]) / BAR["standing_drift"]
        else:
            total += max(0.0, m["linear_tracking_error"] - BAR["linear_error"]) / BAR["linear_error"]
            total += max(0.0, m["yaw_tracking_error"] - BAR["yaw_error"]) / BAR["yaw_error"]
    return total


def run_problem(args) -> str:
    """Why this run cannot be screened for --robot, or "" if it can."""
    import yaml

    config = args.run / "config.yaml"
    if not config.is_file():
        return f"{args.run} is not a training run (no config.yaml)"
    robot = (yaml.safe_load(config.read_text()) or {}).get("robot")
    if robot != args.robot:
        return f"run {args.run} trains {robot}, not {args.robot} (pass --robot {robot})"
    if not args.follow and not list((args.run / "checkpoints").glob("model_*.pt")):
        return f"run {args.run} has no checkpoints yet (checkpoints/model_*.pt); use --follow to wait for them"
    return ""


def checkpoints_to_screen(args, run: Path):
    """Every --stride-th numbered checkpoint from --from-iteration, in order; with --follow, also those still to come."""
    def iteration(path: Path) -> int:
        return int(path.stem.split("_")[1])

    seen: set[Path] = set()
    written = 0  # checkpoints the run has written so far, screened or not: the run is alive while this grows
    last_new = time.monotonic()
    while True:
        every = sorted((run / "checkpoints").glob("model_*.pt"))
        found = [c for c in every if iteration(c) >= args.from_iteration]
        for checkpoint in [c for c in found[:: args.stride] if c not in seen]:
            seen.add(checkpoint)
            yield checkpoint
        if len(every) > written:
            written, last_new = len(every), time.monotonic()
        if not args.follow or time.monotonic() - last_new > args.idle_minutes * 60:
            return
        time.sleep(10)


def first_to_walk(args, run: Path) -> dict | None:
    """Screen ``run``'s checkpoints in order; the first that passes the bar in both engines, as
    {"minutes", "steps", "checkpoint"}, or None. Prints every screened checkpoint's figures."""
    work = Path(tempfile.mkdtemp())
    best = (float("inf"), None)
    for checkpoint in checkpoints_to_screen(args, run):
        state = torch.load(checkpoint, weights_only=False, map_location="cpu")
        policy = work / f"{checkpoint.stem}.onnx"
        export_checkpoint(checkpoint, policy)
        screen = evaluate(policy, work / checkpoint.stem, episodes=args.screen_episodes, seconds=10.0, robot=args.robot,
                          engine="mujoco", reference_randomization=args.reference_randomization)
        gap = shortfall(screen)
        best = min(best, (gap, checkpoint), key=lambda b: b[0])
        print(f"{checkpoint.name}: {state['env_steps']:,} steps, {state['wall_clock'] / 60:.1f} min: screen {summary(screen)}, "
              f"shortfall {gap:.2f}", flush=True)
        if not screen["bar"]["passed"]:
            continue
        for engine, episodes, label in (("mujoco", 20, "full bar"), ("pybullet", args.screen_episodes, "screen"),
                                        ("pybullet", 20, "full bar")):
            result = evaluate(policy, work / f"{checkpoint.stem}_{engine}_{episodes}", episodes=episodes, seconds=10.0,
                              robot=args.robot, engine=engine, reference_randomization=args.reference_randomization)
            print(f"  {label} in {engine}: {'PASSED' if result['bar']['passed'] else 'not met'}: {summary(result)}",
                  flush=True)
            if not result["bar"]["passed"]:
                break
        else:
            print(f"time to walk: {state['wall_clock'] / 60:.1f} min ({state['env_steps']:,} steps) at {checkpoint}")
            return {"minutes": state["wall_clock"] / 60, "steps": state["env_steps"], "checkpoint": checkpoint}
    print(f"no checkpoint of {run} passed the bar; closest: {best[1]} (shortfall {best[0]:.2f})")
    return None


def train_seeds(args) -> int:
    """--train: each seed trained for --minutes alone, then screened; each seed's time to walk and the median."""
    import statistics
    import subprocess

    recipe = args.train
    if not recipe.is_file():
        print(f"time_to_walk: no recipe at {recipe}", file=sys.stderr)
        return 2
    results = {}
    for seed in args.seeds:
        run = Path("runs") / f"ttw_{recipe.stem}_s{seed}"
        command = [sys.executable, "-m", "training.train", "--config", str(recipe), "--seed", str(seed), "--minutes",
                   str(args.minutes), "--steps", str(10**9), "--out", str(run), "--quiet"]
        print(f"seed {seed}: {' '.join(command[2:])}", flush=True)
        if subprocess.run(command).returncode != 0:
            print(f"time_to_walk: training seed {seed} failed", file=sys.stderr)
            return 2
        results[seed] = first_to_walk(args, run)
    minutes = [r["minutes"] if r else float("inf") for r in results.values()]
    for seed, r in results.items():
        print(f"seed {seed}: " + (f"{r['minutes']:.1f} min, {r['steps']:,} steps" if r else f"more than {args.minutes:g} min"))
    median = statistics.median(minutes)
    print(f"median time to walk over seeds {', '.join(map(str, args.seeds))}: "
          + (f"{median:.1f} min" if median != float("inf") else f"more than {args.minutes:g} min")
          + f"; worst: {max(minutes):.1f} min" * (max(minutes) != float("inf")))
    return 0 if all(results.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="a run directory to screen (or --train)")
    parser.add_argument("--train", type=Path, metavar="RECIPE", help="train this recipe once per --seeds, then screen")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--minutes", type=float, default=30.0, help="with --train: each seed's training time")
    parser.add_argument("--robot", default="pupper_v3", help="the robot the run must be training")
    parser.add_argument("--stride", type=int, default=5)
    parser.add_argument("--screen-episodes", type=int, default=3)
    parser.add_argument("--from-iteration", type=int, default=0)
    parser.add_argument("--follow", action="store_true", help="keep screening checkpoints the run writes")
    parser.add_argument("--reference-randomization", action="store_true",
                        help="every screen and bar under the Pupper v3 reference randomization (pupper-eval's flag)")
    parser.add_argument("--idle-minutes", type=float, default=5.0, help="with --follow: stop once the run has written no checkpoint for this long")
    args = parser.parse_args()
    if (args.run is None) == (args.train is None):
        parser.error("give a run directory or --train RECIPE, not both")
    if args.train is not None:
        return train_seeds(args)
    problem = run_problem(args)
    if problem:
        print(f"time_to_walk: {problem}", file=sys.stderr)
        return 2
    return 0 if first_to_walk(args, args.run) else 1


if __name__ == "__main__":
    raise SystemExit(main())
