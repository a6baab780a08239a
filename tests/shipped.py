"""What the shipped policy's own evaluation (models/<robot>_walk_eval.json, written by pupper-report) says it does,
so that runtime tests hold the runtime to the policy's measured behaviour rather than to a hoped-for one."""

from __future__ import annotations

import json

from pupper_ros import resources


def shipped_eval(robot: str = resources.DEFAULT_ROBOT) -> dict:
    path = resources.models_dir() / f"{robot}_walk_eval.json"
    return json.loads(path.read_text())


def forward_speed(command: str = "forward_0.3", robot: str = resources.DEFAULT_ROBOT) -> float:
    """Mean forward speed (m/s) of the shipped policy for ``robot`` under ``command``, from its evaluation."""
    metrics = shipped_eval(robot)
    return metrics["commands"][command]["distance"] / metrics["episode_seconds"]


def forward_speed_0_3() -> float:
    return forward_speed("forward_0.3")
