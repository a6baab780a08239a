"""A copy of the PPO actor in numpy, for environment workers that act on their own.

Workers sample their actions from a snapshot instead of asking the trainer at every step: a rollout then costs one
message per worker instead of one per step, and the trainer is free to update while the workers collect. Kept free of
torch at import, so that worker processes stay small; ``take_snapshot`` imports it when the trainer calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ACTIVATIONS = {
    "ELU": lambda x: np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0))),
    "ReLU": lambda x: np.maximum(x, 0.0),
    "Tanh": np.tanh,
}


@dataclass
class ActorSnapshot:
    """rsl_rl's MLP actor with its observation normalizer and Gaussian action noise, frozen as numpy arrays."""

    obs_mean: np.ndarray
    obs_scale: np.ndarray  # 1 / (std + eps) of the normalizer
    layers: list  # (weight [out, in], bias [out]) or the name of an activation
    action_std: np.ndarray
    # a policy symmetric by construction (training/symmetric_model.py): (observation perm, sign, action perm, sign)
    mirror: tuple | None = None

    def mean_action(self, observations: np.ndarray) -> np.ndarray:
        if self.mirror is None:
            return self._mlp(observations)
        obs_perm, obs_sign, action_perm, action_sign = self.mirror
        mirrored = self._mlp((observations[:, obs_perm] * obs_sign).astype(np.float32))
        return (0.5 * (self._mlp(observations) + mirrored[:, action_perm] * action_sign)).astype(np.float32)

    def _mlp(self, observations: np.ndarray) -> np.ndarray:
        x = (observations - self.obs_mean) * self.obs_scale
        for layer in self.layers:
            if isinstance(layer, str):
                x = _ACTIVATIONS[layer](x)
            else:
                weight, bias = layer
                # einsum, not BLAS: BLAS rounds a row differently with the batch it comes in (seen: 9e-8 for 4 rows
                # against 2 + 2), and a rollout must not depend on how the environments are spread over workers
                x = np.einsum("bi,oi->bo", x, weight) + bias
        return x.astype(np.float32, copy=False)

    def sample(self, observations: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(actions, mean actions) for a batch of observations, given standard normal ``noise`` of the actions' shape."""
        mean = self.mean_action(observations)
        return mean + self.action_std * noise, mean


def take_snapshot(actor) -> ActorSnapshot:
    """Copy an rsl_rl ``MLPModel`` actor (observation normalization, MLP, Gaussian distribution), wherever the learner
    keeps it."""
    import copy

    import torch

    with torch.no_grad():
        if any(p.device.type != "cpu" for p in actor.parameters()):
            actor = copy.deepcopy(actor).cpu()
        normalizer = actor.obs_normalizer
        if isinstance(normalizer, torch.nn.Identity):
            size = actor.obs_dim
            obs_mean, obs_scale = np.zeros(size, np.float32), np.ones(size, np.float32)
        else:
            obs_mean = normalizer._mean.squeeze(0).numpy().astype(np.float32)
            obs_scale = (1.0 / (normalizer._std.squeeze(0) + normalizer.eps)).numpy().astype(np.float32)
        layers = []
        for module in actor.mlp:
            if isinstance(module, torch.nn.Linear):
                layers.append((module.weight.numpy().copy(), module.bias.numpy().copy()))
            elif type(module).__name__ in _ACTIVATIONS:
                layers.append(type(module).__name__)
            else:
                raise ValueError(f"actor snapshot: no numpy version of layer {module!r}")
        actor.distribution.update(torch.zeros(1, actor.distribution.output_dim))  # std does not depend on the mean
        action_std = actor.distribution.std.squeeze(0).numpy().astype(np.float32).copy()
        mirror = None
        if hasattr(actor, "mirror_in"):  # training.symmetric_model.SymmetricMLPModel
            mirror = (actor.mirror_in.perm.numpy().copy(), actor.mirror_in.sign.numpy().copy(),
                      actor.mirror_out.perm.numpy().copy(), actor.mirror_out.sign.numpy().copy())
    return ActorSnapshot(obs_mean, obs_scale, layers, action_std, mirror)
