"""Time to walk: the wall-clock of `pupper-train` from its start to the first checkpoint that passes the bar in both
physics engines.

Walks a run's numbered checkpoints in order (every --stride-th), exports each to ONNX and screens it with a short
`pupper-eval` in PyBullet (--screen-episodes per command, randomized); a checkpoint that passes the screen gets the
full bar (20 episodes of 10 s per command) in PyBullet, then in MuJoCo. Prints each checkpoint's figures and the first
that passes both, with the wall-clock and steps recorded in the checkpoint by the trainer.

Usage: python benchmarks/time_to_walk.py runs/NAME [--robot pupper_v3] [--stride 5] [--screen-episodes 3]
       [--from-iteration K] [--follow]

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


def checkpoints_to_screen(args):
    """Every --stride-th numbered checkpoint from --from-iteration, in order; with --follow, also those still to come."""
    def iteration(path: Path) -> int:
        return int(path.stem.split("_")[1])

    seen: set[Path] = set()
    written = 0  # checkpoints the run has written so far, screened or not: the run is alive while this grows
    last_new = time.monotonic()
    while True:
        every = sorted((args.run / "checkpoints").glob("model_*.pt"))
        found = [c for c in every if iteration(c) >= args.from_iteration]
        for checkpoint in [c for c in found[:: args.stride] if c not in seen]:
            seen.add(checkpoint)
            yield checkpoint
        if len(every) > written:
            written, last_new = len(every), time.monotonic()
        if not args.follow or time.monotonic() - last_new > args.idle_minutes * 60:
            return
        time.sleep(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--robot", default="pupper_v3", help="the robot the run must be training")
    parser.add_argument("--stride", type=int, default=5)
    parser.add_argument("--screen-episodes", type=int, default=3)
    parser.add_argument("--from-iteration", type=int, default=0)
    parser.add_argument("--follow", action="store_true", help="keep screening checkpoints the run writes")
    parser.add_argument("--idle-minutes", type=float, default=5.0, help="with --follow: stop once the run has written no checkpoint for this long")
    args = parser.parse_args()
    problem = run_problem(args)
    if problem:
        print(f"time_to_walk: {problem}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp())
    best = (float("inf"), None)
    for checkpoint in checkpoints_to_screen(args):
        state = torch.load(checkpoint, weights_only=False)
        policy = work / f"{checkpoint.stem}.onnx"
        export_checkpoint(checkpoint, policy)
        screen = evaluate(policy, work / checkpoint.stem, episodes=args.screen_episodes, seconds=10.0, robot=args.robot)
        gap = shortfall(screen)
        best = min(best, (gap, checkpoint), key=lambda b: b[0])
        print(f"{checkpoint.name}: {state['env_steps']:,} steps, {state['wall_clock'] / 60:.1f} min: screen {summary(screen)}, "
              f"shortfall {gap:.2f}", flush=True)
        if not screen["bar"]["passed"]:
            continue
        for engine in ("pybullet", "mujoco"):
            full = evaluate(policy, work / f"{checkpoint.stem}_{engine}", episodes=20, seconds=10.0, robot=args.robot, engine=engine)
            print(f"  full bar in {engine}: {'PASSED' if full['bar']['passed'] else 'not met'}: {summary(full)}", flush=True)
            if not full["bar"]["passed"]:
                break
        else:
            print(f"time to walk: {state['wall_clock'] / 60:.1f} min ({state['env_steps']:,} steps) at {checkpoint}")
            return 0
    print(f"no checkpoint passed the bar; closest: {best[1]} (shortfall {best[0]:.2f})")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
