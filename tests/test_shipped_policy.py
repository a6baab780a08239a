"""The shipped policy: it loads for the robot it was trained for, its report is next to it, and pupper-eval
(onnxruntime, randomized dynamics) walks it forward without a fall in one short episode."""

import json
import subprocess
import sys

from pupper_ros import resources
from pupper_ros.policy import load_policy


def test_shipped_policy_loads_with_its_report(profile):
    policy = load_policy(resources.default_policy_path(), profile)
    assert policy.info.robot == profile.name
    for suffix in ("_eval.json", "_eval.png", "_learning_curve.png", ".md", "_config.yaml", "_checkpoint.pt"):
        assert (resources.models_dir() / f"pupper_v3_walk{suffix}").is_file(), suffix
    report = (resources.models_dir() / "pupper_v3_walk.md").read_text()
    assert f"seed {policy.info.provenance['seed']}" in report and f"{policy.info.provenance['steps']:,}" in report


def test_shipped_policy_was_trained_with_the_default_config():
    """The README says so: the run's resolved config is the default one, but for how long it was asked to run.
    Read as `--resume` reads it: a key the run predates (env.engine; it ran in PyBullet) takes today's default, and
    every key the run recorded must equal today's default. The physics step compares as run: the run recorded 5 ms,
    where today's default says "the profile's step", which for Pupper v3 in PyBullet is 5 ms."""
    from training.config import load_config

    shipped_config, default_config = load_config(resources.models_dir() / "pupper_v3_walk_config.yaml"), load_config()
    assert shipped_config.physics_dt() == default_config.physics_dt()
    shipped, default = shipped_config.to_dict(), default_config.to_dict()
    for config in (shipped, default):
        config.pop("steps"), config["env"].pop("physics_dt")
    assert shipped == default


def test_pupper_eval_one_short_forward_episode_does_not_fall_and_moves_forward(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.evaluate", str(resources.default_policy_path()), "-o", str(tmp_path),
                             "--episodes", "1", "--seconds", "4", "--command", "0.3", "0", "0", "--workers", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "eval_metrics.json").read_text())["commands"]["custom"]
    assert metrics["falls"] == 0
    assert metrics["distance"] > 0.3  # 4 s at a commanded 0.3 m/s
