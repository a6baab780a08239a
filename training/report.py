"""``pupper-report``: turn a training run into a shippable policy with its report.

Exports a checkpoint (default: the run's latest) to ``<out>.onnx``, evaluates it with the full bar (or
``--episodes``) in both physics engines, and writes next to it ``<out>_eval.json`` and ``<out>_eval.png`` (PyBullet:
metrics, commanded against measured velocity), ``<out>_eval_mujoco.json`` and ``<out>_eval_mujoco.png`` (the same in
MuJoCo), ``<out>_progress.csv`` (the run's progress log up to the checkpoint), ``<out>_learning_curve.png`` (from it),
``<out>_config.yaml``, ``<out>_checkpoint.pt`` and ``<out>.md`` (how it was trained and how it
did, the two engines' tables side by side). A policy passes only if it passes the bar in both engines.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
import yaml


def learning_curve(progress_csv: Path, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(progress_csv.open()))
    steps = [int(r["env_steps"]) / 1e6 for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    for ax, key, label in zip(axes, ("mean_return", "mean_episode_length", "fall_share"),
                              ("mean return (last 100 episodes)", "episode length (steps)", "share of episodes ending in a fall")):
        ax.plot(steps, [float(r[key]) for r in rows])
        ax.set_xlabel("environment steps (millions)")
        ax.set_title(label, fontsize=10)
    wall = float(rows[-1]["wall_clock_s"]) / 60
    fig.suptitle(f"{title}: {steps[-1]:.2f} M steps in {wall:.0f} min")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


EVAL_FILES = {"pybullet": "_eval", "mujoco": "_eval_mujoco"}  # engine -> suffix of its metrics and plot


def side_by_side(by_engine: dict[str, dict]) -> list[str]:
    """One markdown table of the suite with each engine's figures next to each other."""
    engines = list(by_engine)
    columns = [("falls", "falls", "d"), ("linear error m/s", "linear_tracking_error", ".3f"),
               ("yaw error rad/s", "yaw_tracking_error", ".3f"), ("drift m/s", "drift", ".3f"), ("distance m", "distance", ".2f")]
    header = "| command | vx | vy | yaw | " + " | ".join(f"{label} {e}" for label, _, _ in columns for e in engines) + " |"
    lines = [header, "|" + "---|" * (4 + len(columns) * len(engines))]
    first = by_engine[engines[0]]["commands"]
    for name, m in first.items():
        c = m["command"]
        cells = [format(by_engine[e]["commands"][name][key], fmt) for _, key, fmt in columns for e in engines]
        lines.append(f"| {name} | {c['vx']} | {c['vy']} | {c['yaw_rate']} | " + " | ".join(cells) + " |")
    return lines


def passes_in_every_engine(by_engine: dict[str, dict]) -> tuple[bool, list[str]]:
    failures = [f"{engine}: {f}" for engine, metrics in by_engine.items() for f in metrics["bar"]["failures"]]
    return not failures, failures


def main(argv: list[str] | None = None) -> int:
    from training.evaluate import evaluate
    from training.export import export_checkpoint
    from training.run_files import progress_until, resolve_checkpoint

    parser = argparse.ArgumentParser(prog="pupper-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run directory")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output prefix, e.g. models/pupper_v3_walk")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint of the run (default: latest)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="episode length (the bar's is 10 s)")
    parser.add_argument("--command", default="pupper-train", help="the training command, for the report")
    parser.add_argument("--robot", help="the robot the run must have trained (default: the run's own)")
    args = parser.parse_args(argv)

    try:
        checkpoint = args.checkpoint or resolve_checkpoint(args.run)
    except FileNotFoundError as exc:
        print(f"pupper-report: {exc}", file=sys.stderr)
        return 2
    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    trained = state["config"]["robot"]
    if args.robot is not None and args.robot != trained:
        print(f"pupper-report: {checkpoint} is a policy for robot {trained!r}, not {args.robot!r}", file=sys.stderr)
        return 2
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    policy = out.with_suffix(".onnx")
    difference = export_checkpoint(checkpoint, policy)
    by_engine = {}
    for engine, suffix in EVAL_FILES.items():
        eval_dir = out.parent / (out.name + "_eval_tmp")
        by_engine[engine] = evaluate(policy, eval_dir, episodes=args.episodes, seconds=args.seconds, robot=state["config"]["robot"],
                                     engine=engine)
        (eval_dir / "eval_metrics.json").replace(out.parent / f"{out.name}{suffix}.json")
        (eval_dir / "eval_velocity.png").replace(out.parent / f"{out.name}{suffix}.png")
        eval_dir.rmdir()
    metrics = by_engine["pybullet"]
    passed, failures = passes_in_every_engine(by_engine)
    progress = out.parent / f"{out.name}_progress.csv"
    progress_until(args.run / "progress.csv", state["iteration"], progress)
    learning_curve(progress, out.parent / f"{out.name}_learning_curve.png", title=args.run.name)

    config = state["config"]
    lines = [
        f"# {out.name}: training report",
        "",
        f"- command: `{args.command}`",
        f"- robot: {config['robot']}; seed {state['seed']}; config digest {state['config_digest']} (resolved config: `{out.name}_config.yaml`)",
        f"- {state['env_steps']:,} environment steps, {state['iteration']} PPO iterations, {state['wall_clock'] / 60:.1f} min of wall-clock "
        f"on this project's 2-core build machine; checkpoint saved {state['saved']}",
        f"- export: onnxruntime vs torch max abs difference {difference:.2e}",
        f"- evaluation (`pupper-eval --engine pybullet` and `--engine mujoco`, onnxruntime, randomized dynamics, "
        f"{metrics['episodes_per_command']} episodes of {metrics['episode_seconds']:.0f} s per command): bar "
        f"{'PASSED in both engines' if passed else 'NOT MET'}",
        "",
        *side_by_side(by_engine),
    ]
    if not passed:
        lines += ["", "Where the bar is not met: " + "; ".join(failures)]
    lines += ["", f"Learning curve: `{out.name}_learning_curve.png`; commanded against measured velocity: "
              + ", ".join(f"`{out.name}{suffix}.png` ({engine})" for engine, suffix in EVAL_FILES.items()) + "."]
    (out.parent / f"{out.name}.md").write_text("\n".join(lines) + "\n")
    (out.parent / f"{out.name}_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    torch.save(state, out.parent / f"{out.name}_checkpoint.pt")
    print("\n".join(lines))
    print(json.dumps({"passed": passed, "failures": failures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
