"""The shipped policies: each loads for the robot it was trained for, its report is next to it, and pupper-eval
(onnxruntime, randomized dynamics) walks it forward without a fall in one short episode."""

import json
import subprocess
import sys

import pytest

from pupper_ros import resources
from pupper_ros.policy import load_policy
from pupper_ros.robot_profile import load_robot_profile
from tests.shipped import ROBOTS
from training.config import RECIPES

# The recipe each shipped policy was trained with (docs/training.md, "The shipped policies").
TRAINING_RECIPES = {"pupper_v3": RECIPES / "pupper_v3_walk_mujoco_batch.yaml", "pupper_v2": RECIPES / "pupper_v2_walk_mujoco_batch.yaml"}


@pytest.mark.parametrize("robot", ROBOTS)
def test_shipped_policy_loads_with_its_report(robot):
    profile = load_robot_profile(robot)
    policy = load_policy(resources.default_policy_path(robot), profile)
    assert policy.info.robot == robot
    for suffix in ("_eval.json", "_eval.png", "_eval_mujoco.json", "_eval_mujoco.png", "_learning_curve.png", ".md",
                   "_config.yaml", "_checkpoint.pt", "_progress.csv"):
        assert (resources.models_dir() / f"{robot}_walk{suffix}").is_file(), suffix
    report = (resources.models_dir() / f"{robot}_walk.md").read_text()
    assert f"seed {policy.info.provenance['seed']}" in report and f"{policy.info.provenance['steps']:,}" in report


@pytest.mark.parametrize("robot", ROBOTS)
def test_shipped_policy_was_trained_with_its_recipe(robot):
    """docs/training.md says so: the run's resolved config is its recipe's, but for how long it ran."""
    from training.config import load_config

    shipped_config = resources.models_dir() / f"{robot}_walk_config.yaml"
    shipped, recipe = (load_config(path).to_dict() for path in (shipped_config, TRAINING_RECIPES[robot]))
    for config in (shipped, recipe):
        config.pop("steps")
    assert shipped == recipe


@pytest.mark.slow
@pytest.mark.parametrize("robot, vx", [("pupper_v3", 0.3), ("pupper_v2", 0.2)])
def test_pupper_eval_one_short_forward_episode_does_not_fall_and_moves_forward(robot, vx, tmp_path):
    seconds = 4
    result = subprocess.run([sys.executable, "-m", "training.evaluate", str(resources.default_policy_path(robot)), "-o", str(tmp_path),
                             "--robot", robot, "--episodes", "1", "--seconds", str(seconds), "--command", str(vx), "0", "0",
                             "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())["commands"]["custom"]
    assert metrics["falls"] == 0
    assert metrics["distance"] > 0.25 * vx * seconds  # a quarter of the commanded distance: it walks, not shuffles
