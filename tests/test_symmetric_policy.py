"""A policy symmetric by construction (training/symmetric_model.py, ``policy.symmetric``): the mirrored observation
gets the mirrored action exactly, whatever the weights, in torch, in the workers' numpy snapshot and in the exported
ONNX file; the critic's value is mirror-invariant."""

import numpy as np
import pytest
import torch

from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.policy import load_policy
from training.actor_snapshot import take_snapshot
from training.config import load_config
from training.ppo_adapter import build_algorithm
from training.symmetric_model import SymmetricMLPModel
from training.symmetry import mirror_maps
from training.vec_env import observation_groups

SMALL = {"envs": 4, "policy": {"actor_hidden": [32, 16], "critic_hidden": [32, 16], "symmetric": True},
         "ppo": {"steps_per_env": 6, "mini_batches": 2, "learning_epochs": 1, "symmetry": False},
         "env": {"engine": "mujoco", "batched": True}}


@pytest.fixture(params=["pupper_v3", "pupper_v2"])
def symmetric(request):
    from training.batch_vec_env import BatchVecEnv

    config = load_config(overrides=SMALL | {"robot": request.param})
    env = BatchVecEnv(config, threads=1)
    alg = build_algorithm(config, env)
    rng = np.random.default_rng(0)
    with torch.no_grad():  # weights and normalizer statistics far from any symmetric starting point
        for model in (alg.actor, alg.critic):
            for p in model.mlp.parameters():
                p.copy_(torch.from_numpy(rng.normal(0, 0.5, p.shape).astype(np.float32)))
            model.obs_normalizer._mean.copy_(torch.from_numpy(rng.normal(0, 1, model.obs_normalizer._mean.shape).astype(np.float32)))
            model.obs_normalizer._std.copy_(torch.from_numpy(rng.uniform(0.2, 2, model.obs_normalizer._std.shape).astype(np.float32)))
    profile = env.env.profile
    yield config, env, alg, mirror_maps(CURRENT_CONTRACT, profile), profile, rng
    env.close()


def test_the_mirrored_observation_gets_the_mirrored_action_in_torch_numpy_and_onnx(symmetric, tmp_path):
    config, env, alg, ((obs_perm, obs_sign), (act_perm, act_sign), (critic_perm, critic_sign)), profile, rng = symmetric
    assert isinstance(alg.actor, SymmetricMLPModel) and isinstance(alg.critic, SymmetricMLPModel)
    n = CURRENT_CONTRACT.observation_size
    obs = rng.normal(0, 1, (64, n)).astype(np.float32)
    critic = rng.normal(0, 1, (64, env.critic_size)).astype(np.float32)
    mirrored_obs = (obs[:, obs_perm] * obs_sign).astype(np.float32)
    mirrored_critic = (critic[:, critic_perm] * critic_sign).astype(np.float32)
    with torch.no_grad():
        actions = alg.actor(observation_groups(obs, critic)).numpy()
        mirrored_actions = alg.actor(observation_groups(mirrored_obs, mirrored_critic)).numpy()
        values = alg.critic(observation_groups(obs, critic)).numpy()
        mirrored_values = alg.critic(observation_groups(mirrored_obs, mirrored_critic)).numpy()
    assert np.abs(actions).max() > 0.1  # not symmetric by being zero
    np.testing.assert_allclose(mirrored_actions, actions[:, act_perm] * act_sign, atol=1e-5)
    np.testing.assert_allclose(mirrored_values, values, atol=1e-5)

    snapshot = take_snapshot(alg.actor)  # what the workers and the batch's collector act with
    np.testing.assert_allclose(snapshot.mean_action(obs), actions, atol=1e-5)

    from training.export import export_checkpoint
    from training.run_files import save_checkpoint

    save_checkpoint(tmp_path / "c.pt", alg, config, iteration=1, env_steps=24, wall_clock=1.0)
    assert export_checkpoint(tmp_path / "c.pt", tmp_path / "p.onnx") < 1e-5
    policy = load_policy(tmp_path / "p.onnx", profile)
    exported, exported_mirrored = policy.run_batch(obs), policy.run_batch(mirrored_obs)
    np.testing.assert_allclose(exported, actions, atol=1e-5)
    np.testing.assert_allclose(exported_mirrored, exported[:, act_perm] * act_sign, atol=1e-5)


@pytest.mark.slow  # trains
def test_a_symmetric_policy_trains_on_the_batch_and_stays_symmetric(symmetric, tmp_path):
    from training.runner import train

    config, *_ = symmetric
    config = load_config(overrides=SMALL | {"robot": config.robot, "steps": 4 * 6 * 2, "save_every": 2})
    checkpoint = train(config, tmp_path / "run", quiet=True)
    from training.export import policy_from_checkpoint

    policy, _, _ = policy_from_checkpoint(checkpoint)
    (obs_perm, obs_sign), (act_perm, act_sign), _ = mirror_maps(CURRENT_CONTRACT, symmetric[4])
    obs = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (16, CURRENT_CONTRACT.observation_size)).astype(np.float32))
    with torch.no_grad():
        actions, mirrored = policy(obs).numpy(), policy(obs[:, obs_perm] * torch.from_numpy(obs_sign).float()).numpy()
    np.testing.assert_allclose(mirrored, actions[:, act_perm] * act_sign, atol=1e-5)
