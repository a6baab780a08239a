"""rsl-rl-lib's PPO as this project uses it: its configuration from ours, the algorithm built on an environment, and
its rollout storage filled from a rollout the environments collected on their own (worker processes or the batch's
collector thread, Ray actors), acting with a numpy snapshot of the actor.
"""

from __future__ import annotations

import numpy as np
import torch

from training.config import TrainConfig


def rsl_rl_config(config: TrainConfig) -> dict:
    ppo, policy = config.ppo, config.policy
    symmetry = None
    if ppo.symmetry:
        symmetry = {"use_data_augmentation": True, "use_mirror_loss": False, "mirror_loss_coeff": 0.0,
                    "data_augmentation_func": "training.symmetry:mirror_augmentation"}
    model = {"class_name": "MLPModel"}
    if policy.symmetric:
        model = {"class_name": "training.symmetric_model:SymmetricMLPModel", "robot": config.robot}
    return {
        "num_steps_per_env": ppo.steps_per_env,
        "save_interval": config.save_every,
        "multi_gpu": None,
        "obs_groups": {"actor": ["policy"], "critic": ["critic"]},
        "algorithm": {
            "class_name": "PPO", "num_learning_epochs": ppo.learning_epochs, "num_mini_batches": ppo.mini_batches,
            "clip_param": ppo.clip, "gamma": ppo.gamma, "lam": ppo.lam, "learning_rate": ppo.learning_rate,
            "desired_kl": ppo.desired_kl, "schedule": "adaptive", "entropy_coef": ppo.entropy_coef,
            "value_loss_coef": ppo.value_loss_coef, "max_grad_norm": ppo.max_grad_norm, "symmetry_cfg": symmetry,
        },
        "actor": {
            **model, "hidden_dims": list(policy.actor_hidden), "activation": policy.activation,
            "obs_normalization": True,
            "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": policy.init_std},
        },
        "critic": {
            **model, "hidden_dims": list(policy.critic_hidden), "activation": policy.activation,
            "obs_normalization": True,
        },
    }


def build_algorithm(config: TrainConfig, env):
    import contextlib
    import io

    from rsl_rl.algorithms import PPO

    with contextlib.redirect_stdout(io.StringIO()):  # rsl_rl prints the network layouts
        alg = PPO.construct_algorithm(env.get_observations().to(env.device), env, rsl_rl_config(config), env.device)
    # Two costs of rsl-rl-lib's update that buy nothing here (2026-12-07, the batched recipe's update, one thread:
    # 88 ms before, 68 ms after; docs/performance.md). Adam: rsl_rl's is torch's per-tensor loop off CUDA, the fused
    # kernel is the same algorithm in one call per step.
    params = [p for group in alg.optimizer.param_groups for p in group["params"]]
    alg.optimizer = torch.optim.Adam(params, lr=alg.learning_rate, fused=True)
    if alg.symmetry is not None and not alg.symmetry.use_mirror_loss:
        # The mirror loss, when it is not trained on, is only logged, and costs a forward pass of the actor on every
        # mirrored mini-batch: not computed (learn_from_rollout drops its key).
        alg.symmetry.compute_loss = _no_mirror_loss
    return alg


def _no_mirror_loss(actor, batch, original_batch_size) -> torch.Tensor:
    return torch.zeros(())


def learn_from_rollout(alg, rollout) -> dict[str, float]:
    """One PPO update of rsl_rl's algorithm on a rollout collected by the workers."""
    fill_storage(alg, rollout)
    losses = alg.update()
    if alg.symmetry is not None and alg.symmetry.compute_loss is _no_mirror_loss:
        losses.pop("symmetry", None)
    return losses


def fill_storage(alg, rollout) -> None:
    """Fill rsl_rl's rollout storage from a worker-collected rollout and compute returns and advantages.

    The workers sampled the actions from a numpy copy of the actor (``rollout.action_means``, ``action_std``): the
    importance ratio is taken against that behaviour policy. When the rollout was collected during the previous
    update, the actor has moved on since; the KL reference of the adaptive learning rate is then the actor as it is
    now, before this update, so that the schedule measures this update's own step as in lockstep PPO.
    """
    from torch.distributions import Normal

    from training.vec_env import observation_groups

    steps, envs = rollout.actions.shape[:2]
    storage, device = alg.storage, alg.device

    def tensor(array):  # writable: see observation_groups
        return torch.as_tensor(np.require(array, requirements="W"), device=device)

    with torch.inference_mode():
        obs = observation_groups(rollout.observations, rollout.critic_observations).to(device)
        flat = obs.flatten(0, 1)
        values = alg.critic(flat).view(steps, envs, 1)
        alg.actor(flat, stochastic_output=True)
        reference = tuple(p.view(steps, envs, -1) for p in alg.actor.output_distribution_params)
        actions = tensor(rollout.actions)
        behaviour = Normal(tensor(rollout.action_means), tensor(rollout.action_std))
        log_probs = behaviour.log_prob(actions).sum(dim=-1)
        rewards = tensor(rollout.rewards)
        rewards = rewards + alg.gamma * values.squeeze(-1) * tensor(rollout.time_outs).float()  # bootstrap time-outs
        dones = tensor(rollout.dones).float()
        transition = alg.transition
        for t in range(steps):
            transition.observations, transition.actions, transition.values = obs[t], actions[t], values[t]
            transition.actions_log_prob, transition.distribution_params = log_probs[t], tuple(p[t] for p in reference)
            transition.rewards, transition.dones = rewards[t], dones[t]
            storage.add_transition(transition)
            transition.clear()
        alg.compute_returns(observation_groups(rollout.last_observations, rollout.last_critic_observations).to(device))
