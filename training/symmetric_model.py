"""A policy that is left/right symmetric by construction, the alternative to mirror-augmenting the data
(``ppo.symmetry``): the mjbatch Go1 example makes its policy symmetric this way.

An rsl_rl ``MLPModel`` whose output for the mirrored observation is the mirrored output, exactly and for any weights:

    f(o) = (g(o) + M_out g(M_in o)) / 2

where g is the model's own observation normalizer and MLP, and M_in, M_out are the robot's mirror maps
(``training/symmetry.py``; each is its own inverse, so f(M_in o) = M_out f(o)). The actor mirrors its actions; the
critic's value is mirror-invariant (M_out is the identity). The exported ONNX policy computes the same f.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from rsl_rl.models import MLPModel
from torch import nn


def _mirror_maps(robot: str, obs_set: str, output_dim: int) -> tuple[tuple, tuple]:
    from pupper_ros.contract import CURRENT_CONTRACT
    from pupper_ros.robot_profile import load_robot_profile
    from training.symmetry import mirror_maps

    actor_obs, action, critic_obs = mirror_maps(CURRENT_CONTRACT, load_robot_profile(robot))
    if obs_set == "actor":
        return actor_obs, action
    return critic_obs, (np.arange(output_dim), np.ones(output_dim))


class _Mirror(nn.Module):
    """x -> x[..., perm] * sign, with the maps as buffers (not in the state dict: they follow from the robot)."""

    def __init__(self, perm: np.ndarray, sign: np.ndarray):
        super().__init__()
        self.register_buffer("perm", torch.as_tensor(perm, dtype=torch.long), persistent=False)
        self.register_buffer("sign", torch.as_tensor(sign, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, -1, self.perm) * self.sign


def symmetrized(normalizer: nn.Module, mlp: nn.Module, mirror_in: _Mirror, mirror_out: _Mirror,
                raw: torch.Tensor) -> torch.Tensor:
    """f(o) = (g(o) + M_out g(M_in o)) / 2 over raw (unnormalized) observations, g = MLP after normalizer."""
    direct = mlp(normalizer(raw))
    mirrored = mlp(normalizer(mirror_in(raw)))
    return 0.5 * (direct + mirror_out(mirrored))


class SymmetricMLPModel(MLPModel):
    """rsl_rl's ``MLPModel`` made mirror-symmetric (module docstring); ``robot`` names the profile whose mirror
    maps it uses."""

    def __init__(self, obs, obs_groups, obs_set: str, output_dim: int, *, robot: str, **kwargs):
        super().__init__(obs, obs_groups, obs_set, output_dim, **kwargs)
        (in_perm, in_sign), (out_perm, out_sign) = _mirror_maps(robot, obs_set, output_dim)
        if len(in_perm) != self.obs_dim:
            raise ValueError(f"the {obs_set}'s mirror map covers {len(in_perm)} inputs, the model has {self.obs_dim}")
        self.mirror_in, self.mirror_out = _Mirror(in_perm, in_sign), _Mirror(out_perm, out_sign)

    def forward(self, obs, masks=None, hidden_state=None, stochastic_output: bool = False) -> torch.Tensor:
        raw = torch.cat([obs[group] for group in self.obs_groups], dim=-1)
        output = symmetrized(self.obs_normalizer, self.mlp, self.mirror_in, self.mirror_out, raw)
        if self.distribution is not None:
            if stochastic_output:
                self.distribution.update(output)
                return self.distribution.sample()
            return self.distribution.deterministic_output(output)
        return output

    def as_onnx(self, verbose: bool) -> nn.Module:
        return _OnnxSymmetricModel(self)


class _OnnxSymmetricModel(nn.Module):
    """The deterministic symmetric policy, observations in and actions out, for ``training.export``."""

    def __init__(self, model: SymmetricMLPModel):
        super().__init__()
        self.obs_normalizer, self.mlp = copy.deepcopy(model.obs_normalizer), copy.deepcopy(model.mlp)
        self.mirror_in, self.mirror_out = copy.deepcopy(model.mirror_in), copy.deepcopy(model.mirror_out)
        self.deterministic_output = model.distribution.as_deterministic_output_module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deterministic_output(symmetrized(self.obs_normalizer, self.mlp, self.mirror_in, self.mirror_out, x))
