"""What a shipped policy's own evaluation (models/<robot>_walk_eval.json, written by pupper-report) says it does,
so that runtime tests hold the runtime to the policy's measured behaviour rather than to a hoped-for one."""

from __future__ import annotations

import json

from pupper_ros import resources

ROBOTS = ("pupper_v3", "pupper_v2")  # every robot with a shipped policy

def shipped_eval(robot: str = "pupper_v3") -> dict:
    path = resources.models_dir() / f"{robot}_walk_eval.json"
    return json.loads(path.read_text())


def mean_forward_speed(robot: str, command: str) -> float:
    """Mean forward speed (m/s) of `robot`'s shipped policy over the evaluation's `command` (a suite name such as
    forward_0.3), from its evaluation."""
    metrics = shipped_eval(robot)
    return metrics["commands"][command]["distance"] / metrics["episode_seconds"]


def forward_speed_0_3() -> float:
    """Mean forward speed (m/s) of the shipped Pupper v3 policy commanded 0.3 m/s, from its evaluation."""
    return mean_forward_speed("pupper_v3", "forward_0.3")
