"""The randomization curriculum: robots are drawn from the config's ``start`` ranges, which widen linearly to the
config's own between ``widen_from_steps`` and ``widen_until_steps`` of the run's env steps; every environment kind is
told the run's steps with each rollout, a resumed run's included; bad curricula are refused naming the key."""

import numpy as np
import pytest

from training.config import ConfigError, load_config
from training.randomization import ranges_at

CURRICULUM = {"randomization": {"kp_scale": [0.6, 0.6], "push_velocity": 0.3,
                                "start": {"kp_scale": [1.0, 1.0], "push_velocity": 0.1},
                                "widen_from_steps": 1000, "widen_until_steps": 3000}}


def test_the_ranges_widen_linearly_between_the_two_step_counts():
    r = load_config(overrides=CURRICULUM).randomization
    for steps, kp, push in [(0, 1.0, 0.1), (1000, 1.0, 0.1), (2000, 0.8, 0.2), (3000, 0.6, 0.3), (10**9, 0.6, 0.3)]:
        ranges = ranges_at(r, steps)
        assert ranges.kp_scale == pytest.approx((kp, kp)) and ranges.push_velocity == pytest.approx(push), steps
        assert ranges.friction == r.friction and not ranges.start  # what the curriculum does not name stays
    plain = load_config().randomization
    assert ranges_at(plain, 0) is plain


def test_a_curriculum_that_cannot_be_followed_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"randomization.start: unknown key\(s\) kp; a curriculum widens friction"):
        load_config(overrides={"randomization": {"start": {"kp": [0.8, 1.1]}}})
    with pytest.raises(ConfigError, match=r"randomization.start.kp_scale must satisfy .* got \[1.2, 1.1\]"):
        load_config(overrides={"randomization": {"start": {"kp_scale": [1.2, 1.1]}}})
    with pytest.raises(ConfigError, match=r"randomization.widen_until_steps must be >= widen_from_steps \(5\), got 0"):
        load_config(overrides={"randomization": {"start": {"kp_scale": [0.8, 1.1]}, "widen_from_steps": 5}})


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
def test_each_environment_draws_from_the_ranges_of_the_runs_steps(engine):
    """The batch and the per-robot environment, told the run's steps, draw new robots' Kp from the widened ranges."""
    from training.batch_env import BatchedPupperEnv
    from training.env import PupperEnv

    config = load_config(overrides=CURRICULUM | {"env": {"engine": engine}})
    batch = BatchedPupperEnv(config, 2)
    single = PupperEnv(config)
    single.reset(seed=0)
    nominal = batch.profile.kp
    assert np.allclose(batch.sim.kp, nominal) and np.allclose(single.sim.kp, nominal)
    batch.set_run_steps(2000)
    single.set_run_steps(3000)
    batch.reset_robots(np.arange(2))
    single.reset()
    assert np.allclose(batch.sim.kp, 0.8 * nominal) and np.allclose(single.sim.kp, 0.6 * nominal)
    batch.close()
    single.close()


def test_training_tells_each_rollout_the_runs_steps_from_where_a_resumed_run_left(monkeypatch):
    import types

    import training.actor_snapshot
    import training.runner
    from training.runner import training_iterations

    class Recorder:
        """Stands in for an environment (and the update below for PPO's): records what each rollout is told."""

        def __init__(self):
            self.told = []

        def start_rollout(self, actor, steps, run_steps):
            self.told.append(run_steps)

        def finish_rollout(self):
            return "rollout"

    monkeypatch.setattr(training.runner, "learn_from_rollout", lambda alg, rollout: {})
    monkeypatch.setattr(training.actor_snapshot, "take_snapshot", lambda actor: actor)
    config = load_config(overrides={"envs": 4, "ppo": {"steps_per_env": 5, "overlap_update": True}})
    env = Recorder()
    iterations = training_iterations(types.SimpleNamespace(actor=None), env, config, run_steps=1000)
    for _ in range(3):
        next(iterations)
    iterations.close()
    assert env.told == [1000, 1020, 1040, 1060]  # overlapped: the next rollout starts before each update
