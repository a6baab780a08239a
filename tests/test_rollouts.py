"""Rollouts collected by the environment workers with a numpy copy of the actor, and how they reach rsl_rl's storage."""

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from pupper_ros.contract import CURRENT_CONTRACT
from training.actor_snapshot import take_snapshot
from training.config import load_config
from training.ppo_adapter import build_algorithm, fill_storage
from training.runner import train
from training.vec_env import PupperVecEnv

SMALL = {"envs": 4, "ppo": {"steps_per_env": 6, "mini_batches": 2, "learning_epochs": 1},
         "policy": {"actor_hidden": [32, 16], "critic_hidden": [32, 16]}}


def _config(**overrides):
    return load_config(overrides={**SMALL, **overrides})


@pytest.fixture
def local_env():
    env = PupperVecEnv(_config(workers=1))
    yield env
    env.close()


def test_snapshot_acts_like_the_torch_actor_with_its_normalizer(local_env):
    alg = build_algorithm(_config(workers=1), local_env)
    normalizer = alg.actor.obs_normalizer
    rng = np.random.default_rng(0)
    size = normalizer._mean.shape[1]
    normalizer._mean.copy_(torch.from_numpy(rng.normal(0, 2, (1, size)).astype(np.float32)))
    normalizer._std.copy_(torch.from_numpy(rng.uniform(0.1, 3, (1, size)).astype(np.float32)))
    obs = rng.normal(0, 3, (64, size)).astype(np.float32)
    snapshot = take_snapshot(alg.actor)
    with torch.no_grad():
        expected = alg.actor(TensorDict({"policy": torch.from_numpy(obs)}, batch_size=[64]))
        alg.actor(local_env.get_observations(), stochastic_output=True)
    assert np.max(np.abs(snapshot.mean_action(obs) - expected.numpy())) < 1e-5
    np.testing.assert_allclose(snapshot.action_std, alg.actor.output_std.detach().numpy()[0], rtol=1e-6)
    actions, means = snapshot.sample(obs, np.ones((64, len(snapshot.action_std)), np.float32))
    np.testing.assert_allclose(actions, means + snapshot.action_std, rtol=1e-6)


@pytest.mark.slow
def test_a_rollout_does_not_depend_on_how_the_environments_are_spread_over_workers(local_env):
    alg = build_algorithm(_config(workers=1), local_env)
    snapshot = take_snapshot(alg.actor)
    local_env.start_rollout(snapshot, 5)
    alone = local_env.finish_rollout()
    spread_env = PupperVecEnv(_config(workers=2))
    try:
        spread_env.start_rollout(snapshot, 5)
        spread = spread_env.finish_rollout()
    finally:
        spread_env.close()
    assert alone.actions.shape == (5, 4, CURRENT_CONTRACT.action_size)
    for name in ("observations", "critic_observations", "actions", "action_means", "rewards", "dones", "time_outs",
                 "last_observations", "last_critic_observations"):
        np.testing.assert_array_equal(getattr(spread, name), getattr(alone, name), err_msg=name)
    # consecutive: each step's observation is where the previous one left (no environment finished in 5 steps)
    assert not alone.dones.any()
    local_env.start_rollout(snapshot, 1)
    np.testing.assert_array_equal(local_env.finish_rollout().observations[0], alone.last_observations)


def test_storage_holds_the_rollout_with_the_actors_log_probabilities_and_values(local_env):
    config = _config(workers=1)
    alg = build_algorithm(config, local_env)
    local_env.start_rollout(take_snapshot(alg.actor), config.ppo.steps_per_env)
    rollout = local_env.finish_rollout()
    rollout.time_outs[2, 1] = True  # as if environment 1 had timed out at step 2
    fill_storage(alg, rollout)

    storage = alg.storage
    assert storage.step == config.ppo.steps_per_env
    with torch.no_grad():
        flat = storage.observations.flatten(0, 1)
        values = alg.critic(flat).view(storage.values.shape)
        alg.actor(flat, stochastic_output=True)
        log_probs = alg.actor.get_output_log_prob(storage.actions.flatten(0, 1)).view(storage.actions_log_prob.shape)
        mean, std = (p.view(storage.actions.shape) for p in alg.actor.output_distribution_params)
    np.testing.assert_array_equal(storage.actions.numpy(), rollout.actions)
    torch.testing.assert_close(storage.actions_log_prob, log_probs, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(storage.values, values)
    torch.testing.assert_close(storage.distribution_params[0], mean)  # the KL reference: the actor before its update
    torch.testing.assert_close(storage.distribution_params[1], std)
    bootstrapped = rollout.rewards.copy()
    # in float32, as the storage computes it: near cancellation a float64 sum differs from it by several float32 ulps
    bootstrapped[2, 1] += np.float32(alg.gamma) * values[2, 1, 0].numpy()
    np.testing.assert_allclose(storage.rewards.squeeze(-1).numpy(), bootstrapped, rtol=1e-6)
    np.testing.assert_array_equal(storage.dones.squeeze(-1).numpy().astype(bool), rollout.dones)
    assert torch.isfinite(storage.advantages).all() and storage.advantages.std() > 0


@pytest.mark.slow
def test_overlapped_training_writes_checkpoints_with_the_workers_collecting_during_updates(tmp_path):
    config = _config(workers=2, steps=4 * 6 * 3, save_every=3, ppo={**SMALL["ppo"], "overlap_update": True})
    checkpoint = train(config, tmp_path / "run", quiet=True)
    state = torch.load(checkpoint, weights_only=False)
    assert (state["iteration"], state["env_steps"]) == (3, 72)


@pytest.mark.slow
def test_closing_with_a_rollout_in_flight_stops_the_workers():
    env = PupperVecEnv(_config(workers=2))
    alg = build_algorithm(_config(workers=2), env)
    env.start_rollout(take_snapshot(alg.actor), 6)
    procs = list(env._procs)
    env.close()
    assert not any(p.is_alive() for p in procs)


def test_a_second_rollout_cannot_start_before_the_first_is_collected(local_env):
    alg = build_algorithm(_config(workers=1), local_env)
    local_env.start_rollout(take_snapshot(alg.actor), 2)
    with pytest.raises(RuntimeError, match="already being collected"):
        local_env.start_rollout(take_snapshot(alg.actor), 2)
    local_env.finish_rollout()
    with pytest.raises(RuntimeError, match="no rollout is being collected"):
        local_env.finish_rollout()


def test_a_resumed_runs_progress_log_keeps_each_iteration_once_under_the_current_header(tmp_path):
    """keep_progress_until: rows after the checkpoint's iteration go; a log written before a column was added (here
    without lost_rollouts) gets the current header and its kept rows an empty cell for the new column."""
    import csv

    from training.run_files import PROGRESS_COLUMNS, keep_progress_until

    log = tmp_path / "progress.csv"
    old_header = PROGRESS_COLUMNS[:-1]
    rows = [[str(i), str(100 * i), "1.0", "0.5", "10.0", "0.000", "", "0"] for i in range(1, 6)]
    with log.open("w", newline="") as f:
        csv.writer(f).writerows([old_header] + rows)
    keep_progress_until(log, 3)
    kept = list(csv.reader(log.open(newline="")))
    assert kept[0] == PROGRESS_COLUMNS
    assert [row[0] for row in kept[1:]] == ["1", "2", "3"]
    assert all(len(row) == len(PROGRESS_COLUMNS) and row[-1] == "" for row in kept[1:])


def test_the_update_learns_what_rsl_rls_own_update_learns(local_env):
    """build_algorithm's fused Adam and its skipped logging-only mirror loss: one update from the same weights on the
    same rollout moves every parameter as rsl_rl's algorithm as it constructs itself does (float rounding aside)."""
    import contextlib
    import io

    from rsl_rl.algorithms import PPO

    from training.ppo_adapter import learn_from_rollout, rsl_rl_config

    config = _config(workers=1)
    torch.manual_seed(3)
    ours = build_algorithm(config, local_env)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = PPO.construct_algorithm(local_env.get_observations(), local_env, rsl_rl_config(config), "cpu")
    theirs.actor.load_state_dict(ours.actor.state_dict())
    theirs.critic.load_state_dict(ours.critic.state_dict())
    assert ours.optimizer.param_groups[0]["fused"] and not theirs.optimizer.param_groups[0].get("fused")
    local_env.start_rollout(take_snapshot(ours.actor), config.ppo.steps_per_env)
    rollout = local_env.finish_rollout()
    for alg in (ours, theirs):
        alg.train_mode()
    initial = [p.detach().clone() for p in ours.actor.parameters()]
    torch.manual_seed(4)  # the mini-batches' shuffle
    our_losses = learn_from_rollout(ours, rollout)
    torch.manual_seed(4)
    their_losses = learn_from_rollout(theirs, rollout)
    assert "symmetry" not in our_losses and "symmetry" in their_losses
    for name in our_losses:
        assert our_losses[name] == pytest.approx(their_losses[name], rel=1e-4, abs=1e-6), name
    assert any(not torch.equal(p, q) for p, q in zip(ours.actor.parameters(), initial))  # the update did move them
    for ours_p, theirs_p in zip([*ours.actor.parameters(), *ours.critic.parameters()],
                                [*theirs.actor.parameters(), *theirs.critic.parameters()]):
        torch.testing.assert_close(ours_p, theirs_p, rtol=1e-5, atol=1e-6)
