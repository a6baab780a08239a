"""What a training run leaves in its directory: checkpoints (``checkpoints/model_NNNNN.pt`` and ``latest.pt``) and
the progress log (``progress.csv``, one row per iteration), and how a resumed run finds and trims them.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path

import torch

from training.config import TrainConfig

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest.pt"
PROGRESS_LOG = "progress.csv"
PROGRESS_COLUMNS = ["iteration", "env_steps", "wall_clock_s", "mean_return", "mean_episode_length", "fall_share",
                    "checkpoint", "nonfinite_resets", "lost_rollouts"]


def save_checkpoint(path: Path, alg, config: TrainConfig, iteration: int, env_steps: int, wall_clock: float) -> None:
    state = {
        "algorithm": alg.save(),
        "iteration": iteration,
        "env_steps": env_steps,
        "wall_clock": wall_clock,
        "config": config.to_dict(),
        "config_digest": config.digest(),
        "seed": config.seed,
        "saved": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def progress_until(progress_csv: Path, iteration: int, path: Path) -> None:
    """Write to ``path`` the rows of the run's progress log up to ``iteration`` (header kept)."""
    with progress_csv.open(newline="") as source:
        rows = list(csv.reader(source))
    with path.open("w", newline="") as copy:
        csv.writer(copy).writerows([rows[0]] + [row for row in rows[1:] if int(row[0]) <= iteration])


def keep_progress_until(progress_path: Path, iteration: int) -> None:
    """Drop the log's rows after ``iteration``: a run killed after its last checkpoint logged iterations that the
    resumed run repeats, and the log must have each iteration once. A log written before a column was added gets the
    current header, its rows the new columns empty."""
    with progress_path.open(newline="") as source:
        rows = list(csv.reader(source))
    missing = len(PROGRESS_COLUMNS) - len(rows[0])
    kept = [row + [""] * missing for row in rows[1:] if int(row[0]) <= iteration]
    tmp = progress_path.with_suffix(".tmp")
    with tmp.open("w", newline="") as copy:
        csv.writer(copy).writerows([PROGRESS_COLUMNS] + kept)
    os.replace(tmp, progress_path)


def resolve_checkpoint(run_or_checkpoint: str | Path) -> Path:
    path = Path(run_or_checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_DIR / LATEST
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return path
