"""The batched environment's array code is the per-robot code: the policy contract's ObservationBuilder over
``[robots, ...]`` arrays equals, row by row, one builder per robot; each reward term over a batch of recorded
per-robot steps equals, row by row, the term on each step."""

import numpy as np
import pytest

from pupper_ros.contract import CURRENT_CONTRACT, ObservationBuilder, projected_gravity, projected_gravity_batch
from training import rewards

ROBOTS = 5


def test_the_array_observation_is_the_per_robot_observation_row_by_row(profile):
    rng = np.random.default_rng(3)
    batch = ObservationBuilder(CURRENT_CONTRACT, profile, robots=ROBOTS)
    singles = [ObservationBuilder(CURRENT_CONTRACT, profile) for _ in range(ROBOTS)]
    for step in range(6):
        if step == 3:  # a reset of some robots forgets their history only
            batch.reset([1, 4])
            singles[1].reset()
            singles[4].reset()
        inputs = {
            "base_angular_velocity": rng.normal(0, 2, (ROBOTS, 3)),
            "projected_gravity": rng.normal(0, 1, (ROBOTS, 3)),
            "velocity_command": rng.uniform(-1, 1, (ROBOTS, 3)),
            "gait_phase": rng.uniform(0, 1, ROBOTS),
            "joint_position": profile.default_pose + rng.normal(0, 0.5, (ROBOTS, 12)),
            "joint_velocity": rng.normal(0, 20, (ROBOTS, 12)),
            "last_action": rng.uniform(-4, 4, (ROBOTS, 12)),
        }
        inputs["joint_velocity"][2, 5] = 1e6  # clipped the same way
        rows = batch.build(**inputs)
        assert rows.shape == (ROBOTS, CURRENT_CONTRACT.observation_size) and rows.dtype == np.float32
        for i, single in enumerate(singles):
            expected = single.build(**{name: (value[i] if name != "gait_phase" else float(value[i]))
                                       for name, value in inputs.items()})
            np.testing.assert_array_equal(rows[i], expected)


@pytest.fixture(scope="module")
def recorded_steps():
    """RewardInputs of 80 steps of the per-robot training environment (MuJoCo, randomized, random actions)."""
    from training import env as env_module
    from training.config import load_config
    from training.env import PupperEnv

    recorded = []
    original = env_module.total_reward

    def recording(inputs, *args):
        recorded.append(inputs)
        return original(inputs, *args)

    env_module.total_reward = recording
    try:
        env = PupperEnv(load_config(overrides={"env": {"engine": "mujoco"}}), randomize=True)
        env.reset(seed=5)
        rng = np.random.default_rng(5)
        for _ in range(80):
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 12).astype(np.float32))
            if terminated or truncated:
                env.reset()
        env.close()
    finally:
        env_module.total_reward = original
    return recorded


def stacked(steps: list) -> rewards.RewardInputs:
    """The steps as one batch: each array field stacked on a leading robot axis; the configuration scalars kept."""
    first = steps[0]
    fields = {}
    for name in first.__dataclass_fields__:
        value = getattr(first, name)
        if name in ("swing_height_target", "tracking_sigma", "air_time_target"):
            fields[name] = value
        else:
            fields[name] = np.stack([np.asarray(getattr(s, name)) for s in steps])
    return rewards.RewardInputs(**fields)


@pytest.mark.parametrize("term", sorted(rewards.REWARD_TERMS))
def test_each_reward_term_over_a_batch_is_the_per_robot_value_row_by_row(recorded_steps, term):
    function = rewards.REWARD_TERMS[term]
    batch = function(stacked(recorded_steps))
    assert batch.shape == (len(recorded_steps),)
    per_robot = np.array([float(function(step)) for step in recorded_steps])
    np.testing.assert_allclose(batch, per_robot, rtol=1e-12, atol=0)
    if term not in ("termination", "feet_air_time"):  # these two are zero on most steps
        assert np.ptp(per_robot) > 0, f"{term} did not vary over the recorded steps: the check would prove little"


def test_the_total_reward_over_a_batch_is_the_per_robot_total(recorded_steps):
    from training.config import load_config

    config = load_config()
    weights, dt = config.rewards.weights, 0.02
    totals, _ = rewards.total_reward(stacked(recorded_steps), weights, dt, config.rewards.only_positive)
    expected = [float(rewards.total_reward(step, weights, dt, config.rewards.only_positive)[0]) for step in recorded_steps]
    np.testing.assert_allclose(totals, expected, rtol=1e-12, atol=1e-15)


def test_projected_gravity_over_a_batch_is_the_per_robot_rule_row_by_row():
    rng = np.random.default_rng(4)
    quaternions = rng.normal(size=(50, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    batch = projected_gravity_batch(quaternions)
    for q, row in zip(quaternions, batch):
        np.testing.assert_allclose(row, projected_gravity(q), rtol=0, atol=1e-15)
