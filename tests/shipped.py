"""What the shipped policy's own evaluation (models/<robot>_walk_eval.json, written by pupper-report) says it does,
so that runtime tests hold the runtime to the policy's measured behaviour rather than to a hoped-for one."""

from __future__ import annotations

import json

from pupper_ros import resources


def shipped_eval() -> dict:
    path = resources.models_dir() / "pupper_v3_walk_eval.json"
    return json.loads(path.read_text())


def forward_speed_0_3() -> float:
    """Mean forward speed (m/s) of the shipped policy commanded 0.3 m/s, from its evaluation."""
    metrics = shipped_eval()
    return metrics["commands"]["forward_0.3"]["distance"] / metrics["episode_seconds"]
